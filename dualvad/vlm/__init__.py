"""dualvad.vlm"""
