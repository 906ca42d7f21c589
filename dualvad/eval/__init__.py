"""dualvad.eval"""
