"""The stage runner under the real stages: SIGTERM mid-ingest then a re-run, a settings change, and corrupt or
duplicated inputs that leave the earlier outputs intact."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pytest

from dualvad import paths
from dualvad import schema as S
from dualvad.config import load_config
from dualvad.corpus import SynthSpec, generate_corpus, read_corpus
from dualvad.pipeline.ingest import run_ingest
from dualvad.pipeline.sample import run_sample
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.runlock import RunBusyError
from dualvad.stages.records import CorruptInputError
from dualvad.stages.runner import Skipped

from faultlog import record_fault
from raykill import freeze_when, kill_frozen, registered_metric

VIDEOS = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "corpus"
    generate_corpus(root, SynthSpec(videos=VIDEOS, seconds=1.0, seed=3))
    return root


def _stderr_until(process: subprocess.Popen, text: str, timeout_s: float = 120.0) -> str:
    """``process``'s standard error read up to the first line holding ``text``; fails with what was read if
    none comes within ``timeout_s``."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if text in line:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert found.is_set(), f"no {text!r} on stderr within {timeout_s:g} s:\n{''.join(lines)[-4000:]}"
    return "".join(lines)


def _sigterm_when(process: subprocess.Popen, marker: str, ready: Callable[[], bool], timeout_s: float,
                  before: Callable[[], None] | None = None) -> str:
    """SIGTERM ``process`` once ``ready()`` holds, with its Ray processes named by ``marker`` stopped
    (SIGSTOP) before ``ready`` is read and until the command has said it was interrupted, so the stage's
    work is unfinished when the signal lands; ``before`` runs just before the signal. Returns the command's
    stderr once it has exited 143."""
    frozen = freeze_when(marker, ready, root=process.pid, timeout_s=timeout_s)
    try:
        assert frozen and process.poll() is None, f"{marker}: the stage ended before it could be interrupted"
        if before is not None:
            before()
        process.send_signal(signal.SIGTERM)
        err = _stderr_until(process, "interrupted by SIGTERM")  # the stage has ended, unpublished
    finally:
        kill_frozen(frozen)  # the command's Ray shuts down once they are gone
    err += process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signal.SIGTERM, err
    return err


def _staged_parts(run: Path) -> list[Path]:
    work = run / paths.WORK_DIR
    return sorted(work.glob(f"{paths.SEGMENTS}-*/part-*.parquet")) if work.exists() else []


def test_sigterm_mid_ingest_keeps_the_finished_videos_and_the_rerun_adds_the_rest(ray_session, corpus,
                                                                                tmp_path):
    """A concurrent second ingest refuses; SIGTERM ends the first with its finished videos staged; the
    re-run decodes only the rest."""
    run = tmp_path / "run"
    overrides = [f"corpus={corpus}", f"run={run}", "ingest.segments=4", "ingest.workers=1",
                 "ingest.cpus_per_worker=0.5", "stages.flush_videos=1"]
    script = Path(sys.executable).parent / "dualvad"
    process = subprocess.Popen([str(script), "ingest", *overrides], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

    def second_ingest_refuses() -> None:  # on the same run meanwhile (once, both wrote every video)
        with pytest.raises(RunBusyError, match=rf"in use by `dualvad ingest` \(pid {process.pid} "):
            run_ingest(load_config(None, overrides))

    # The decoding task is stopped while the staged parts are counted: its video and those after it are
    # unfinished when the signal lands, on any machine.
    err = _sigterm_when(process, "segment_videos_task", lambda: len(_staged_parts(run)) >= 2, 240,
                        before=second_ingest_refuses)
    assert "interrupted by SIGTERM" in err and "the same command continues" in err
    assert not (run / paths.SEGMENTS).exists()  # nothing published half-done
    staged = open_run(str(_staged_parts(run)[0].parent)).read_table()
    kept = set(staged[S.VIDEO_ID].to_pylist())
    assert 2 <= len(kept) < VIDEOS and staged.num_rows == 4 * len(kept)  # whole videos only

    summary = run_ingest(load_config(None, overrides))
    assert (summary.resumed, summary.processed) == (len(kept), VIDEOS - len(kept))
    table = open_run(str(run)).read_table(paths.SEGMENTS)
    pairs = list(zip(table[S.VIDEO_ID].to_pylist(), table[S.SEGMENT_INDEX].to_pylist(), strict=True))
    record_fault("ingest: SIGTERM mid-stage, then the same command", f"resumed: {len(kept)} videos kept, "
                 f"{summary.processed} decoded again", rows_lost=4 * VIDEOS - len(set(pairs)),
                 rows_duplicated=len(pairs) - len(set(pairs)))
    assert len(pairs) == len(set(pairs)) == 4 * VIDEOS  # nothing lost, nothing twice
    assert {video for video, _ in pairs} == {r.video_id for r in read_corpus(corpus)}


def test_other_segment_count_redoes_ingest(ray_session, corpus, tmp_path):
    # Today's defect: `ingest --segments 16` on a run ingested with 8 said "48 already done" and kept K=8.
    base = [f"corpus={corpus}", f"run={tmp_path / 'run'}", "ingest.cpus_per_worker=0.5"]
    run_ingest(load_config(None, [*base, "ingest.segments=4"]))
    assert isinstance(run_ingest(load_config(None, [*base, "ingest.segments=4"])), Skipped)
    summary = run_ingest(load_config(None, [*base, "ingest.segments=3"]))
    assert summary.processed == VIDEOS
    table = open_run(str(tmp_path / "run")).read_table(paths.SEGMENTS)
    assert table.num_rows == 3 * VIDEOS and max(table[S.SEGMENT_INDEX].to_pylist()) == 2


@pytest.fixture
def copied_run(scored_run, tmp_path):
    """A copy of the scored run with its samples: (config, run folder)."""
    config, _ = scored_run
    target = tmp_path / "run"
    shutil.copytree(config.run, target, ignore=shutil.ignore_patterns(paths.LOCK_FILE, paths.LOCK_OWNER_FILE,
                                                                          paths.WORK_DIR))
    config = dataclasses.replace(config, run=str(target))
    run_sample(config)
    return config, target


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_truncated_checkpoint_fails_score_in_one_line_and_keeps_the_scores(copied_run):
    config, run = copied_run
    before = _snapshot(run / paths.SCORES)
    weights = run / paths.SCORER / paths.SCORER_MODEL_DIR / "model.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CorruptInputError) as raised:
        run_score(config, force=True)
    message = str(raised.value)
    assert "\n" not in message and "scorer/model" in message and "`dualvad train-scorer`" in message
    assert _snapshot(run / paths.SCORES) == before


def test_a_truncated_segments_part_fails_sample_and_keeps_the_samples(copied_run):
    config, run = copied_run
    before = _snapshot(run / paths.SAMPLES)
    part = sorted((run / paths.SEGMENTS).glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(CorruptInputError, match=rf"{part.name} cannot be read .*`dualvad ingest`"):
        run_sample(config, force=True)
    assert _snapshot(run / paths.SAMPLES) == before


def test_duplicated_segment_rows_are_refused_by_score_and_sample(copied_run):
    # Today two concurrent ingests both wrote every video, and score and sample took the duplicates.
    config, run = copied_run
    part = sorted((run / paths.SEGMENTS).glob("part-*.parquet"))[0]
    shutil.copy(part, part.with_name("part-twice-00000.parquet"))
    for stage in (run_score, run_sample):
        with pytest.raises(CorruptInputError, match="more than once.*re-run `dualvad ingest --force`"):
            stage(config, force=True)
    first = open_run(str(run)).read_table(paths.SAMPLES)
    assert pc.count_distinct(first[S.VIDEO_ID]).as_py() == first.num_rows  # the published samples stand
    assert os.path.exists(run / paths.SCORES / paths.STAGE_FILE)


def test_sigterm_mid_training_then_a_rerun_goes_on_from_the_checkpoint_to_the_same_scorer(scored_run,
                                                                                        tmp_path):
    """`dualvad train-scorer` SIGTERMed once Ray Train registered its epoch-10 checkpoint (of 30) exits 143
    and publishes nothing; run again, the stage finds that run (same settings, same scratch folder, the same
    Ray Train run name) and goes on from its last registered checkpoint (epoch 10 or later: the signal is
    handled when the driver next returns from Ray) instead of starting over, to the scorer and history of
    the shared run, trained with the same settings and never interrupted."""
    import json

    import torch

    from dualvad.config import config_yaml
    from dualvad.train.train_scorer import run_train_scorer

    config, _ = scored_run
    run = tmp_path / "run"
    shutil.copytree(Path(config.run) / paths.SEGMENTS, run / paths.SEGMENTS)
    config = dataclasses.replace(config, run=str(run))
    (tmp_path / "config.yaml").write_text(config_yaml(config))
    command = [str(Path(sys.executable).parent / "dualvad"), "train-scorer", "--config",
               str(tmp_path / "config.yaml")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The training worker is stopped while the registered epoch is read: training is unfinished when the
    # signal lands, on any machine.
    _sigterm_when(process, "RayTrainWorker", lambda: registered_metric(run / paths.WORK_DIR, "epoch") >= 9,
                  timeout_s=300)
    assert not (run / paths.SCORER).exists()  # nothing published half-done

    summary = run_train_scorer(config)
    record_fault("train-scorer: SIGTERM after the epoch-10 checkpoint, then the same command",
                 f"exit 143, then resumed after epoch {summary.resumed_after}", rows_lost=0)
    assert summary.resumed_after is not None and summary.resumed_after >= 9, str(summary)
    assert f"resumed after epoch {summary.resumed_after}" in str(summary)
    history = json.loads((run / paths.SCORER / paths.SCORER_HISTORY_FILE).read_text())
    reference = Path(scored_run[0].run) / paths.SCORER
    assert history == [pytest.approx(report, abs=1e-6, nan_ok=True)
                       for report in json.loads((reference / paths.SCORER_HISTORY_FILE).read_text())]
    weights = torch.load(run / paths.SCORER / paths.SCORER_MODEL_DIR / "model.pt")
    for name, tensor in torch.load(reference / paths.SCORER_MODEL_DIR / "model.pt").items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert not [p for p in (run / paths.WORK_DIR).iterdir() if "scorer" in p.name]  # no run left behind
