"""dualvad.train"""
