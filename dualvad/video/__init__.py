"""dualvad.video"""
