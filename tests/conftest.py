"""Shared fixtures: one local Ray per test session (helpers for media live in media.py).

The session's Ray workers (Serve replicas, Ray Data and Ray Train workers) write their output to Ray's log
files only, not to the pytest output; a test that fails gets the lines they wrote while it ran appended to
its report (section "Ray workers' logs").
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

# Ray Train's controller polls its workers every 2 s by default: a finished training or a registered
# checkpoint is noticed up to 2 s late, in every Ray Train run of the suite. Inherited by every Ray the
# tests start (the session's, and those of the CLI subprocesses).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

#: The session fixtures whose tests share one pytest-xdist worker (``--dist loadgroup``), which builds the
#: fixture once, and the group each one's tests join. A whole module goes with its first test that needs one
#: of them (a module's fixtures are then built once too), in this order of precedence, unless the module
#: names its group itself (``pytestmark = pytest.mark.xdist_group(...)``). The scored run is built once for
#: both workers (see ``scored_run``), so a module that only copies it may join the other group.
SHARED_RUNS = {"tiny_demo": "tiny_demo", "evaluated_copy": "scored_run", "scored_run": "scored_run"}
#: The groups in the order the workers take them (``--no-loadscope-reorder`` keeps it): one long group
#: each to start with, so that the short tests fill the gaps at the end. Measured: docs/decisions.md.
GROUP_ORDER = ("scored_run", "tiny_demo")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each module's tests with the group of the shared run its tests need, and put the grouped
    modules first, in GROUP_ORDER."""
    shared = list(SHARED_RUNS)  # the first one a module's tests use (in this order) decides its group
    groups: dict[Path, str] = {}  # module -> the group it names itself
    first_used: dict[Path, int] = {}  # module -> index in ``shared`` of the first shared run it uses
    for item in items:
        named = item.get_closest_marker("xdist_group")
        if named is not None:
            groups[item.path] = named.args[0]
            continue
        for index, name in enumerate(shared):
            if name in getattr(item, "fixturenames", ()):
                first_used[item.path] = min(index, first_used.get(item.path, index))
                break
    groups |= {path: SHARED_RUNS[shared[index]] for path, index in first_used.items()}
    for item in items:
        if item.path in groups and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(groups[item.path]))
    order = {group: index for index, group in enumerate(GROUP_ORDER)}
    items.sort(key=lambda item: order.get(groups.get(item.path, ""), len(order)))


_ray_log_folder: Path | None = None  # Ray's session log folder while the session's Ray runs
_log_sizes_at_setup: dict[Path, int] = {}  # each log file's size when the running test started
_LOG_PATTERNS = ("worker-*.out", "worker-*.err")  # Serve replicas log here too
_LOG_LINES = 120  # the last lines shown of each file that grew during a failed test


@pytest.fixture(scope="session")
def session_s3():
    """A real S3 API (moto on loopback) for the whole test session, with an empty bucket ``data``: the
    environment a client needs to reach it. The session's Ray workers have it (see ``ray_session``); a test
    that reads or writes on it from this process sets it with ``objectstore.s3_environment``."""
    from objectstore import moto_s3_process, s3_env

    with moto_s3_process("data") as endpoint:
        yield s3_env(endpoint)


@pytest.fixture(scope="session")
def ray_session(session_s3):
    """One local Ray for the whole test session, 2 CPUs as on the CI machine; workers log to files only.
    Its workers reach the session's S3 store: its settings are the job's runtime environment, as
    docs/cluster.md passes them with ``ray job submit``, so a run on ``s3://data/...`` needs no Ray of its
    own."""
    import ray

    from dualvad.config import RayConfig
    from dualvad.pipeline.runtime import ensure_ray

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # Started here, not by ensure_ray, for log_to_driver=False: one line per Serve request and per Ray
    # Data task otherwise floods the pytest output. ensure_ray then joins it, as the CLI's commands do.
    global _ray_log_folder
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                       runtime_env={"env_vars": session_s3})
    _ray_log_folder = Path(context.address_info["session_dir"], "logs")
    ensure_ray(RayConfig(num_cpus=2))
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    _ray_log_folder = None
    ray.shutdown()


def _log_files() -> list[Path]:
    if _ray_log_folder is None:
        return []
    return sorted(path for pattern in _LOG_PATTERNS for path in _ray_log_folder.glob(pattern))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _log_sizes_at_setup
    _log_sizes_at_setup = {path: path.stat().st_size for path in _log_files()}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    if report.failed:
        grown = _grown_logs(_log_sizes_at_setup)
        if grown:
            report.sections.append(("Ray workers' logs (written during this test)", grown))
    return report


def _grown_logs(sizes: dict[Path, int]) -> str:
    """The last lines each Ray log file gained since ``sizes`` were taken, under the file's name."""
    parts = []
    for path in _log_files():
        with path.open("rb") as file:
            file.seek(sizes.get(path, 0))
            lines = file.read().decode(errors="replace").splitlines()[-_LOG_LINES:]
        if lines:
            parts.append(f"--- {path.name} (last {len(lines)} lines)\n" + "\n".join(lines))
    return "\n".join(parts)


# The shared run's scorer keeps the lr, group drop and checkpoint choice its users' thresholds were measured
# with (the stream tests: an explosion peaks at 0.84, normal streams stay <= 0.54). The defaults (lr 3e-3,
# group drop 0.5, the last checkpoint) are chosen on corpora of 39-240 training videos (bench/cues.py); on
# this run's 10 they give a normal stream 0.85 (docs/decisions.md, "The scorer on small training sets").
# One scorer, not the default ensemble of 5, for the same reason (the tiny demo trains the default's).
SHARED_SCORER = ("scorer.lr=1e-3", "scorer.group_drop=0", "scorer.checkpoint=val_loss", "scorer.ensemble=1")


@pytest.fixture(scope="session")
def scored_run(ray_session, tmp_path_factory):
    """A generated corpus (20 videos of 3 s) ingested with K=8, a scorer trained on it (1 worker, TensorBoard
    tracking on) and every segment scored: (config, train summary). Shared by the tests of later stages.

    Built once per test run, by the first pytest-xdist worker that needs it, in the folder the workers
    share; a worker that needs it meanwhile waits on the lock. The modules that run stages on it (they
    re-sample and re-build its benchmarks) share one worker (SHARED_RUNS); a module elsewhere only copies
    the stage outputs nothing changes (segments, scorer, scores)."""
    import pickle

    from filelock import FileLock

    from dualvad.config import load_config
    from dualvad.corpus import SynthSpec, generate_corpus
    from dualvad.pipeline.ingest import run_ingest
    from dualvad.pipeline.score import run_score
    from dualvad.train.train_scorer import run_train_scorer

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "scored-shared"
    config = load_config(None, [f"corpus={root / 'corpus'}", f"run={root / 'run'}", "ingest.segments=8",
                                "ingest.cpus_per_worker=0.5", "scorer.epochs=30", "scorer.workers=1",
                                "scorer.cpus_per_worker=0.5", "scorer.topk=2", "scorer.report_every=10",
                                "scorer.tracking=tensorboard", *SHARED_SCORER])
    summary_file = root / "train-summary.pickle"  # written last: its presence means the run is complete
    with FileLock(f"{root}.lock"):
        if not summary_file.exists():
            generate_corpus(root / "corpus", SynthSpec(videos=20, seconds=3.0, seed=5))
            run_ingest(config)
            summary = run_train_scorer(config)
            run_score(config)
            summary_file.write_bytes(pickle.dumps(summary))
    return config, pickle.loads(summary_file.read_bytes())


@pytest.fixture(scope="session")
def evaluated_copy(scored_run, tmp_path_factory):
    """A run of the scored run's segments, scorer and scores (other modules re-sample and re-build the shared
    one), sampled (budget 8) and evaluated with a tiny VLM (one strategy, 56 px frames, clips of 4):
    (config, run, tiny model folder). The detector's tests and the serve tests share it."""
    import dataclasses
    import shutil

    from dualvad import paths
    from dualvad.pipeline.evaluate import run_evaluate
    from dualvad.pipeline.sample import run_sample
    from dualvad.rundir import open_run
    from dualvad.vlm.model import save_tiny_model

    config, _ = scored_run
    root = tmp_path_factory.mktemp("evaluated")
    target = root / "run"
    for part in (paths.SEGMENTS, paths.SCORER, paths.SCORES):  # with their stage records: sample's inputs
        shutil.copytree(Path(config.run, part), target / part)
    tiny = save_tiny_model(root / "vlm")
    config = dataclasses.replace(
        config, run=str(target),
        eval=dataclasses.replace(config.eval, model=str(tiny), ablate="none", workers=1, cpus_per_worker=0.5,
                                 timeline_videos=1, thumbnails=1, max_new_tokens=4),
        sample=dataclasses.replace(config.sample, budget=8),
        benchmarks=dataclasses.replace(config.benchmarks, clip_frames=4, image_size=56))
    run_sample(config)
    run_evaluate(config)
    return config, open_run(config.run), tiny


@pytest.fixture(scope="session")
def tiny_demo(ray_session, tmp_path_factory):
    """``dualvad demo`` on 12 generated videos of 1 s with tinyrun's TINY settings (the smallest that still
    run every stage) and the tiny VLM, not the demo profile's ``small``: (run folder, exit code, console
    output). The demo test checks its outputs; the job test compares its CPU stages with a job of the same
    settings."""
    from dualvad.cli import main

    from tinyrun import TINY

    run = tmp_path_factory.mktemp("tiny-demo") / "demo"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["demo", "--run", str(run), "--videos", "12", "synth.seconds=1.0", *TINY,
                     "finetune.model=tiny", "finetune.micro_batch=1"])
    return run, code, out.getvalue() + err.getvalue()
