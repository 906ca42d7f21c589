"""bench/gpu.sh --dry-run: the GPU check's arguments, configs and model, without a GPU."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gpu_sh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_dry_run_builds_the_configs_and_the_2b_model_on_the_meta_device():
    done = _gpu_sh("--dry-run", "--steps", "4")
    assert done.returncode == 0, done.stderr
    assert "dry run: InternVL3-2B on the meta device, 2,0" in done.stdout  # ~2.09 B parameters
    assert "fine-tuning 4 steps, ZeRO-2, micro-batch 2, gradient checkpointing True" in done.stdout
    assert "Judge at batch [1, 8, 32]; ingest with [1, 2, 4, 8, 16] workers; nothing measured" in done.stdout


def test_bad_arguments_are_refused_before_anything_runs():
    done = _gpu_sh("--dry-run", "--steps", "1")
    assert done.returncode == 2 and "--steps must be >= 2" in done.stderr
