"""Videos against feature files: the CPU-seconds and frames read of ingest, train-scorer, score, sample and
build-benchmarks on one generated corpus, side by side in one run (issue 29, item 5).

The same corpus goes through the stages twice on one local Ray (2 CPUs): once decoding its videos (the
``motion`` feature), once reading the 16-frame snippet features that ``dualvad extract-features`` wrote
for it (two crops, pooled into the same K segments; its own cost is printed once, apart: a published
feature set costs nothing to make). Per stage, it prints the CPU-seconds of the driver and every process
below it (Ray's workers and daemons: bench/ingest.py's accounting) and the frames read from decord
(``VideoReader.get_batch``, counted in every process; decoding from the preceding keyframe costs more than
the frames read).

    python bench/features.py                          # 40 videos of 8 s (15 fps)
    python bench/features.py --videos 16 --seconds 4  # a quick look
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ingest import _cpu_seconds

from common import OUT, corpus_arguments

COUNT_ENV = "DUALVAD_BENCH_FRAME_COUNTS"  # a folder: each process writes its frames read to <pid>.count
STAGES = ("ingest", "train-scorer", "score", "sample", "build-benchmarks")


def count_frames_read() -> None:
    """Make ``decord.VideoReader.get_batch`` count the frames it returns into ``$COUNT_ENV/<pid>.count``
    (Ray's ``worker_process_setup_hook`` runs it in every worker; the driver calls it itself)."""
    import decord

    folder = os.environ.get(COUNT_ENV)
    if not folder or getattr(decord.VideoReader, "counted", False):
        return
    original, total = decord.VideoReader.get_batch, [0]

    def get_batch(self, indices):
        batch = original(self, indices)
        total[0] += len(indices)
        Path(folder, f"{os.getpid()}.count").write_text(str(total[0]))
        return batch

    decord.VideoReader.get_batch, decord.VideoReader.counted = get_batch, True


def frames_read(folder: Path) -> int:
    return sum(int(path.read_text() or 0) for path in folder.glob("*.count"))


def measure(work, folder: Path) -> tuple[object, float, int, float]:
    """(work's result, CPU-seconds of every process during it, frames read during it, wall seconds)."""
    before, frames, started = _cpu_seconds(), frames_read(folder), time.perf_counter()
    result = work()
    wall = time.perf_counter() - started
    after = _cpu_seconds()
    cpu = sum(seconds - before.get(pid, (kind, 0.0))[1] for pid, (kind, seconds) in after.items())
    return result, cpu, frames_read(folder) - frames, wall


def main() -> None:
    args = _args()
    import ray

    from dualvad.config import load_config
    from dualvad.corpus import SynthSpec, generate_corpus, read_corpus
    from dualvad.pipeline.runtime import ensure_ray
    from dualvad.scorer.extract import extract_corpus
    from dualvad.stages.registry import stage_named

    folder = OUT / "features" / f"{args.videos}x{args.seconds:g}s-seed{args.seed}"
    corpus = folder / "corpus"
    if not (corpus / "annotations").is_dir():
        generate_corpus(corpus, SynthSpec(videos=args.videos, seconds=args.seconds, seed=args.seed))
    counts = Path(tempfile.mkdtemp(prefix="frame-counts-"))
    os.environ[COUNT_ENV] = str(counts)
    count_frames_read()
    hook = {"worker_process_setup_hook": count_frames_read, "env_vars": {COUNT_ENV: str(counts)}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=hook)
    base = [f"corpus={corpus}", "ray.num_cpus=2", f"ingest.segments={args.segments}",
            f"scorer.epochs={args.epochs}", "scorer.report_every=5", f"sample.budget={args.budget}"]
    ensure_ray(load_config(None, base).ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    config = load_config(None, base)
    features = folder / "features"
    shutil.rmtree(features, ignore_errors=True)
    extracted, cpu, frames, wall = measure(
        lambda: extract_corpus(read_corpus(corpus), str(features), config.ingest, "crops"), counts)
    print(extracted)
    rows = {}
    for name, extra in (("videos", []), ("feature files", [f"ingest.features={features}"])):
        run = folder / f"run-{name.replace(' ', '-')}"
        shutil.rmtree(run, ignore_errors=True)
        config = load_config(None, [*base, f"run={run}", *extra])
        for stage in STAGES:
            entry = stage_named(stage).entry_point()
            summary, stage_cpu, stage_frames, stage_wall = measure(
                lambda entry=entry, config=config: entry(config), counts)
            print(summary, flush=True)
            rows[name, stage] = (stage_cpu, stage_frames, stage_wall)
    records = read_corpus(corpus)
    print(f"\n{len(records)} videos of {args.seconds:g} s, K={args.segments}, budget {args.budget}, "
          f"{args.epochs} scorer epochs; 2 CPUs, one local Ray (its start not counted)\n")
    print("| stage | CPU-s, videos | CPU-s, feature files | frames read, videos | frames read, feature "
          "files |")
    print("|---|---:|---:|---:|---:|")
    for stage in STAGES:
        (cv, fv, _), (cf, ff, _) = rows["videos", stage], rows["feature files", stage]
        print(f"| {stage} | {cv:.1f} | {cf:.1f} | {fv} | {ff} |")
    total = {name: [sum(rows[name, s][i] for s in STAGES) for i in range(3)]
             for name in ("videos", "feature files")}
    print(f"| **all five** | {total['videos'][0]:.1f} | {total['feature files'][0]:.1f} | "
          f"{total['videos'][1]} | {total['feature files'][1]} |")
    print(f"\nextract-features, once (not in the table): {cpu:.1f} CPU-s, {frames} frames read, {wall:.1f} s")
    ray.shutdown()
    shutil.rmtree(counts)


def _args():
    parser = corpus_arguments(__doc__.split("\n\n")[0], videos=40)
    parser.set_defaults(epochs=10)
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--budget", type=int, default=16)
    return parser.parse_args()


if __name__ == "__main__":
    main()
