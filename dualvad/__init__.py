"""dualvad: distributed video anomaly detection (DUAL-VAD sampling and benchmarks, RefineVAD
scoring, InternVL fine-tuning), on Ray. Importable without a running cluster."""

from importlib import metadata

try:
    __version__ = metadata.version("dualvad")  # pyproject.toml's version, the one place it is written
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
