"""The whole pipeline on object storage: ``dualvad pipeline`` with its corpus and run directory on a real S3
API (the session's moto server on loopback), on the session's Ray, whose job carries the store's settings
in its runtime environment, as docs/cluster.md passes them with ``ray job submit``. Every stage publishes
on S3. Its corpus and settings are those of the demo test's run (the session's ``tiny_demo``: ``dualvad
demo`` on the same Ray into a local run directory), and the outputs of the CPU stages (ingest to
build-benchmarks) on S3 must hold that run's rows: compared row by row in key order (which videos share a
Parquet part follows the order workers finish in, and a float32 score may differ in its last bit with the
part's batch, so floats agree to 1e-6), except for the columns that name where the videos are. Fine-tuning
starts from the same preset weights; the fine-tuned weights are not compared: two runs of Ray Train on the
same machine already differ in their data order. ``ray job submit`` on a Ray head of its own is
tests/jobs/test_ray_job.py."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
from runcompare import differences, read_bytes

from dualvad import paths
from dualvad.cli import main
from dualvad.config import load_config
from dualvad.rundir import RunDir, open_run
from dualvad.stages.records import read_record
from dualvad.vlm.model import save_preset_model

from objectstore import s3_environment, upload_folder
from tinyrun import OUTPUTS, TINY

#: The stages whose outputs are compared with the local run's (the others train a VLM or evaluate it).
CPU_STAGES = ("ingest", "train-scorer", "score", "sample", "build-benchmarks")


def test_the_whole_pipeline_on_s3_has_the_outputs_of_a_local_run(ray_session, session_s3, tiny_demo,
                                                                  tmp_path):
    local_run, code, _ = tiny_demo
    assert code == 0, "the demo test's run failed: see test_demo_runs_every_stage_and_prints_outputs"
    out = io.StringIO()
    folder = f"s3://data/{tmp_path.name}"  # the store lives for the session: a folder of this test's own
    with s3_environment(session_s3):
        upload_folder(local_run / "corpus", f"{folder}/corpus")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["pipeline", f"corpus={folder}/corpus", f"run={folder}/run", *TINY])
        (tmp_path / "pipeline.log").write_text(out.getvalue())  # each stage's summary line gives its seconds
        assert code == 0, out.getvalue()[-6000:]
        for stage in OUTPUTS:
            assert f"{stage}: " in out.getvalue()  # its summary line
        assert "pipeline: done" in out.getvalue()
        _compare(open_run(f"{folder}/run"), open_run(str(local_run)))


def _compare(remote: RunDir, local: RunDir) -> None:
    assert remote.fs.type_name == "s3" and local.local
    for stage, folder in OUTPUTS.items():
        record = read_record(remote, folder)
        assert record is not None and record["stage"] == stage, f"{stage}: not published on S3"
        if stage not in CPU_STAGES:
            continue
        assert record["fingerprint"] == read_record(local, folder)["fingerprint"]  # same inputs, settings
        assert not (differ := differences(local, remote, folder)), f"{folder}: {differ}"
    staged = remote.fs.get_file_info(pafs.FileSelector(remote.path(paths.WORK_DIR), recursive=True,
                                                       allow_not_found=True))
    assert not [i.path for i in staged if i.type == pafs.FileType.File]  # staging published and gone
    assert remote.exists(paths.FINETUNE, paths.FINETUNE_FINAL_DIR, "config.json")
    metrics = json.loads(read_bytes(remote, paths.EVAL, paths.METRICS_FILE))["metrics"]
    assert list(metrics) == ["scorer", "vlm/focused", "verdict"]
    # the preset the fine-tuning started from: written locally, uploaded, fetched by every worker
    preset = read_bytes(remote, paths.FINETUNE, paths.FINETUNE_BASE_DIR, "model.safetensors")
    with tempfile.TemporaryDirectory() as folder:
        save_preset_model("tiny", folder, seed=load_config(None, []).finetune.seed)
        assert preset == Path(folder, "model.safetensors").read_bytes()
