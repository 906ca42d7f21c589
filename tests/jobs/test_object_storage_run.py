"""The whole pipeline with the corpus and the run directory on object storage: a real S3 API (moto's server
on loopback), reached through ``AWS_ENDPOINT_URL`` as docs/cluster.md says. The same corpus is run once from
``s3://`` into ``s3://`` (every stage) and once locally up to the benchmarks, in one process on its own Ray
(started after the S3 settings are in its environment, so every Ray worker has them). The CPU stages'
outputs on S3 hold the rows of the local ones (compared row by row in key order: which videos share a Parquet
part follows the order workers finish in, and a float32 score may differ in its last bit with the part's
batch, so floats agree to 1e-6), except for the columns that name where the videos are; fine-tuning
starts from the same preset weights and the scorer's evaluation row is the same. The fine-tuned weights
are not compared: two runs of Ray Train on the same machine already differ in their data order."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dualvad import paths
from dualvad.config import load_config
from dualvad.corpus import SynthSpec, generate_corpus
from dualvad.rundir import open_run
from dualvad.stages import read_record
from dualvad.vlm.model import save_preset_model

from objectstore import moto_s3, s3_env
from tinyrun import OUTPUTS, TINY

ROOT = Path(__file__).resolve().parents[2]

RUN_S = 1200  # a tiny pipeline, its CPU stages again: 1,123 s measured for two whole ones, 2 loaded cores
CPU_STAGES = ("ingest", "train-scorer", "score", "sample", "build-benchmarks")
LOCATION_COLUMNS = {"video_path"}  # s3://... in one run, /tmp/... in the other

# Both runs in one process: one Ray start (ensure_ray) serves both.
SCRIPT = f"""
import sys
from dualvad.cli import main
s3_corpus, s3_run, corpus, run, *tiny = sys.argv[1:]
code = main(["pipeline", f"corpus={{s3_corpus}}", f"run={{s3_run}}", *tiny])
for stage in {CPU_STAGES!r}:
    code = code or main([stage, f"corpus={{corpus}}", f"run={{run}}", *tiny])
sys.exit(code)
"""


ROW_KEYS = ("video_id", "id", "segment_index", "frame_index")  # what orders the rows of every table


def _rows(run, folder: str) -> dict[str, list[dict]]:
    """The rows of every table under ``RUN/<folder>`` (a folder of parts, or one file) without the location
    columns, in key order; by table (the folder holding the parts, or the file)."""
    base = run.path(folder)
    selector = pafs.FileSelector(base, recursive=True)
    files = sorted(i.path for i in run.fs.get_file_info(selector)
                   if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    tables: dict[str, list[dict]] = {}
    for path in files:
        name = path[len(base) + 1:]
        folder_of, _, base_name = name.rpartition("/")
        key = f"{folder_of or '.'}/part-*" if base_name.startswith("part-") else name
        tables.setdefault(key, []).extend(
            {k: v for k, v in row.items() if k not in LOCATION_COLUMNS}
            for row in pq.read_table(path, filesystem=run.fs).to_pylist())
    return {key: sorted(rows, key=lambda row: tuple(str(row.get(k)) for k in ROW_KEYS))
            for key, rows in tables.items()}


def _json_files(run, folder: str) -> dict[str, object]:
    """Every JSON file under ``RUN/<folder>`` but the runner's record (which holds times), parsed."""
    base = run.path(folder)
    infos = run.fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return {i.path[len(base) + 1:]: json.loads(_bytes(run, folder, i.path[len(base) + 1:])) for i in infos
            if i.type == pafs.FileType.File and i.path.endswith(".json") and i.base_name != paths.STAGE_FILE}


def _close(a, b) -> bool:
    """Equal, floats to a relative 1e-6 (the last bits of a batched float32 pass), inside lists and dicts."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _bytes(run, *parts: str) -> bytes:
    with run.fs.open_input_stream(run.path(*parts)) as stream:
        return stream.read()


def test_every_stage_runs_from_and_into_s3_with_the_outputs_of_a_local_run(tmp_path):
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, SynthSpec(videos=12, seconds=1.0))
    with moto_s3("data") as endpoint:
        env = {**os.environ, **s3_env(endpoint), "RAY_ADDRESS": "local", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
               "PYTHONPATH": str(ROOT)}
        os.environ.update(s3_env(endpoint))  # this process reads the results
        try:
            pafs.copy_files(str(corpus), "data/corpus", destination_filesystem=open_run("s3://data/x").fs)
            done = subprocess.run([sys.executable, "-c", SCRIPT, "s3://data/corpus", "s3://data/run",
                                   str(corpus), str(tmp_path / "run"), *TINY], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=RUN_S)
            (tmp_path / "pipeline.log").write_text(done.stdout + done.stderr)
            assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
            _compare(open_run("s3://data/run"), open_run(str(tmp_path / "run")))
        finally:
            for key in s3_env(endpoint):
                os.environ.pop(key, None)


def _compare(remote, local) -> None:
    assert remote.fs.type_name == "s3" and local.local
    for stage, folder in OUTPUTS.items():
        record = read_record(remote, folder)
        assert record is not None and record["stage"] == stage, f"{stage}: not published on S3"
        if stage not in CPU_STAGES:
            continue
        assert record["fingerprint"] == read_record(local, folder)["fingerprint"]  # same inputs, settings
        expected, found = _rows(local, folder) | _json_files(local, folder), \
            _rows(remote, folder) | _json_files(remote, folder)
        assert expected and found.keys() == expected.keys(), f"{folder}: {sorted(found)}, {sorted(expected)}"
        for name, content in expected.items():
            assert _close(found[name], content), f"{folder}/{name} differs"
    staged = remote.fs.get_file_info(pafs.FileSelector(remote.path(paths.WORK_DIR), recursive=True,
                                                       allow_not_found=True))
    assert not [i.path for i in staged if i.type == pafs.FileType.File]  # staging published and gone
    assert remote.exists(paths.FINETUNE, paths.FINETUNE_FINAL_DIR, "config.json")
    metrics = json.loads(_bytes(remote, paths.EVAL, paths.METRICS_FILE))["metrics"]
    assert list(metrics) == ["scorer", "vlm/focused"]
    # the preset the fine-tuning started from: written locally, uploaded, fetched by every worker
    preset = _bytes(remote, paths.FINETUNE, paths.FINETUNE_BASE_DIR, "model.safetensors")
    with tempfile.TemporaryDirectory() as folder:
        save_preset_model("tiny", folder, seed=load_config(None, []).finetune.seed)
        assert preset == Path(folder, "model.safetensors").read_bytes()
