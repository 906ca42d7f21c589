"""dualvad.serve"""
