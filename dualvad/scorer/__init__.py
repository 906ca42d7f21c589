"""dualvad.scorer"""
