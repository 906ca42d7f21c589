"""The whole pipeline with the corpus and the run directory on object storage: a real S3 API (moto's server
on loopback), reached through ``AWS_ENDPOINT_URL`` as docs/cluster.md says. The same corpus is run once from
``s3://`` into ``s3://`` and once locally, in one process on its own Ray (started after the S3 settings are in
its environment, so every Ray worker has them); every stage's output on S3 equals the local one, except for
the columns that name where the videos are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dualvad import paths
from dualvad.corpus import SynthSpec, generate_corpus
from dualvad.rundir import open_run
from dualvad.stages import read_record

from objectstore import moto_s3, s3_env
from tinyrun import OUTPUTS, TINY

ROOT = Path(__file__).resolve().parents[2]

RUN_S = 1200  # two tiny pipelines on 2 cores
LOCATION_COLUMNS = {"video_path"}  # s3://... in one run, /tmp/... in the other

# Both pipelines in one process: one Ray start (ensure_ray) serves both.
SCRIPT = """
import sys
from dualvad.cli import main
s3_corpus, s3_run, corpus, run, *tiny = sys.argv[1:]
for pair in ((s3_corpus, s3_run), (corpus, run)):
    code = main(["pipeline", f"corpus={pair[0]}", f"run={pair[1]}", *tiny])
    if code:
        sys.exit(code)
"""


def _tables(run, folder: str) -> dict[str, object]:
    """Every Parquet file under ``RUN/<folder>`` (by path inside it; part files by order, their names hold
    a random token) as a table without the location columns."""
    base = run.path(folder)
    selector = pafs.FileSelector(base, recursive=True)
    files = sorted(i.path for i in run.fs.get_file_info(selector)
                   if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    tables = {}
    for index, path in enumerate(files):
        name = path[len(base) + 1:]
        key = f"part#{index}" if "part-" in name else name
        table = pq.read_table(path, filesystem=run.fs)
        tables[key] = table.drop_columns([c for c in table.column_names if c in LOCATION_COLUMNS])
    return tables


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
        assert record["fingerprint"] == read_record(local, folder)["fingerprint"]  # same inputs, settings
        for name, table in _tables(local, folder).items():
            assert _tables(remote, folder)[name].equals(table), f"{folder}/{name} differs"
    staged = remote.fs.get_file_info(pafs.FileSelector(remote.path(paths.WORK_DIR), recursive=True,
                                                       allow_not_found=True))
    assert not [i.path for i in staged if i.type == pafs.FileType.File]  # staging published and gone
    weights = (paths.FINETUNE, paths.FINETUNE_FINAL_DIR, "model.safetensors")
    assert _bytes(remote, *weights) == _bytes(local, *weights)
    metrics = (paths.EVAL, paths.METRICS_FILE)
    assert json.loads(_bytes(remote, *metrics))["metrics"] == json.loads(_bytes(local, *metrics))["metrics"]
