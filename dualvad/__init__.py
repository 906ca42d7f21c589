"""dualvad: distributed video anomaly detection (DUAL-VAD sampling and benchmarks, RefineVAD
scoring, InternVL fine-tuning), on Ray. Importable without a running cluster."""

__version__ = "0.1.0"
