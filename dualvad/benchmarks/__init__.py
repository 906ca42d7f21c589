"""dualvad.benchmarks"""
