"""dualvad.pipeline"""
