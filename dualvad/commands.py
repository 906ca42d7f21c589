"""The ``dualvad`` commands' work, one function per command (``config``, ``synth``, the stages, ``pipeline``,
``export-jsonl``, ``demo``, ``serve``, ``detect``): each takes the loaded config and the parsed arguments and
returns the exit code. :mod:`dualvad.cli` parses, loads the config and maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from dualvad import __version__, console, paths
from dualvad.config import DEMO_RUN, ConfigError, DualVADConfig, config_hash, config_yaml
from dualvad.rundir import open_run
from dualvad.stages.plan import dry_run
from dualvad.stages.registry import STAGES, stage_named


def cmd_config(config: DualVADConfig, _args: argparse.Namespace) -> int:
    """Print the effective config; ``--config`` of the output gives the same config back."""
    print(f"# dualvad {__version__}: the effective config (hash {config_hash(config)}); "
          "--config this file to use it")
    print(config_yaml(config), end="")
    return 0


def cmd_synth(config: DualVADConfig, args: argparse.Namespace) -> int:
    from dualvad.corpus import generate_corpus

    records = generate_corpus(args.out, config.synth, progress=_progress("synth"))
    anomalous = sum(r.is_anomalous for r in records)
    print(f"synth: {len(records)} videos ({anomalous} anomalous) -> {os.path.abspath(args.out)}")
    return 0


def cmd_extract_features(config: DualVADConfig, args: argparse.Namespace) -> int:
    """The corpus's features in the published layouts (:mod:`dualvad.scorer.extract`); exit 1 when no video
    could be extracted."""
    from dualvad.corpus.readers import read_corpus
    from dualvad.scorer.extract import extract_corpus

    _require(config.corpus, "corpus", "pass --corpus DIR")
    summary = extract_corpus(read_corpus(config.corpus, config.ingest.categories), args.out, config.ingest,
                             config.ingest.features_layout, progress=_progress("extract-features"))
    for video_id, reason in summary.failures:
        print(f"extract-features: {video_id}: {reason}", file=sys.stderr)
    print(summary)
    return 0 if summary.written else 1


def cmd_ingest(config: DualVADConfig, args: argparse.Namespace) -> int:
    _require(config.corpus, "corpus", "pass --corpus DIR")
    return cmd_stage(config, args)


def _run_stage(name: str, config: DualVADConfig, force: bool):
    """Run stage ``name``; returns its summary (printable). Imported on use: Ray loads only when needed."""
    return stage_named(name).entry_point()(config, force=force)


def cmd_stage(config: DualVADConfig, args: argparse.Namespace) -> int:
    if not args.dry_run:
        print(_run_stage(args.command, config, args.force))
        return 0
    with dry_run():  # every stage goes through the runner, which returns its Plan instead of running
        print(_run_stage(args.command, config, args.force))
    return 0


def cmd_pipeline(config: DualVADConfig, args: argparse.Namespace) -> int:
    """Every stage on ``config.corpus`` into ``config.run``; a failing stage ends it (exit 1 or 2)."""
    _require(config.corpus, "corpus", "pass --corpus DIR_OR_URI")
    print(f"pipeline: config {config_hash(config)}, corpus {config.corpus}, run {config.run}")
    run_pipeline(config, args.force)
    print("pipeline: done")
    return 0


def run_pipeline(config: DualVADConfig, force: bool = False) -> dict[str, str]:
    """Run every registered stage (:data:`dualvad.stages.registry.STAGES`) in order (each skips itself when
    its output is up to date), printing each one's summary line as it ends; returns stage -> its output."""
    from dualvad.pipeline.runtime import ensure_ray

    ensure_ray(config.ray)  # once, before the first stage: every stage reuses it
    outputs = {}
    for stage in STAGES:
        if stage.output == paths.SCORER and config.score.scorer_run:  # score takes another run's scorer
            print(f"{stage.name}: skipped, score uses the scorer of {config.score.scorer_run} "
                  "(score.scorer_run)", flush=True)
            continue
        summary = _run_stage(stage.name, config, force)
        print(summary, flush=True)
        outputs[stage.name] = summary.output
    return outputs


def cmd_export(config: DualVADConfig, args: argparse.Namespace) -> int:
    from dualvad.benchmarks.export import export_jsonl

    run = open_run(config.run)
    print(export_jsonl(run, args.out or run.sub(paths.JSONL_EXPORT).uri))
    return 0


def cmd_demo(config: DualVADConfig, args: argparse.Namespace) -> int:
    """Generate a corpus inside the run directory, then run every stage."""
    from dualvad.corpus import generate_corpus

    run = os.path.abspath(config.run)
    corpus = config.corpus or os.path.join(run, "corpus")
    if not os.path.isdir(os.path.join(corpus, "annotations")):
        generate_corpus(corpus, config.synth, progress=_progress("synth"))
    config.corpus, config.run = corpus, run
    print(f"demo: config {config_hash(config)}, corpus {corpus}, run {run}")
    outputs = {"corpus": corpus, **run_pipeline(config, args.force)}
    print("demo: done. Outputs:")
    for stage, path in outputs.items():
        print(f"  {stage:<12} {path}")
    _print_next_steps(run, outputs["evaluate"])
    return 0


def _print_next_steps(run: str, report: str) -> None:
    """Where to look and what to run once the demo's run exists."""
    print(f"demo: open the report {report}")
    print(f"demo: start the detector endpoint on this run with `dualvad serve --run {run}`, then open "
          "http://127.0.0.1:8000/ (upload a video) or POST a video to http://127.0.0.1:8000/v1/detect; "
          f"`dualvad detect VIDEO --run {run}` scores videos without a server")


def cmd_serve(config: DualVADConfig, args: argparse.Namespace) -> int:
    """Start the Serve app on a local Ray and block until Ctrl-C."""
    from dualvad.serve.local import serve_locally
    from dualvad.serve.settings import AppArgs, corpus_roots, default_run

    try:
        run = args.run or default_run()
    except FileNotFoundError as error:
        print(f"dualvad serve: error: {error}", file=sys.stderr)
        return 2
    roots = args.allowed_roots or corpus_roots(run)
    print(f"dualvad serve: JSON uris may name videos under {roots or 'nothing (pass --allowed-root DIR)'}")
    hosts = args.stream_hosts or "no host (pass --allow-stream-host HOST)"
    print(f"dualvad serve: POST /v1/streams may follow cameras on {hosts}")
    app_args = AppArgs(run=run, vlm=args.vlm, allowed_roots=roots, allowed_stream_hosts=args.stream_hosts)
    serve_locally(app_args, config.ray, host=args.host, port=args.port)
    return 0


def cmd_detect(config: DualVADConfig, args: argparse.Namespace) -> int:
    """Score the named videos with the run's detector; JSON Lines to --out or stdout; 1 if any failed."""
    from dualvad.batch_detect import run_detect, video_files
    from dualvad.detector import Detector
    from dualvad.detector_schema import DetectOptions
    from dualvad.serve.settings import default_run

    try:
        if args.run is None and config.run == DEMO_RUN:  # the default, as `dualvad serve` has it
            default_run()
        videos = video_files(args.inputs)
        options = DetectOptions(budget=args.frame_budget, strategy=args.frame_strategy,
                                threshold=args.threshold, explain=not args.no_explain)
    except (FileNotFoundError, ValueError) as error:
        print(f"dualvad detect: error: {error}", file=sys.stderr)
        return 2
    detector = Detector.from_run(config.run, args.vlm or config.eval.model or None,
                                 device="cuda" if config.eval.use_gpu else "cpu",
                                 batch_size=config.eval.batch_size, max_new_tokens=config.eval.max_new_tokens)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as out:
            summary = run_detect(detector, videos, options, out, args.out, _progress("detect"), args.report)
    else:
        summary = run_detect(detector, videos, options, sys.stdout, "-", _progress("detect"), args.report)
    print(summary, file=sys.stderr)
    return 1 if summary.failed else 0


def cmd_watch(config: DualVADConfig, args: argparse.Namespace) -> int:
    """Follow one live source until SIGINT/SIGTERM or --max-seconds (:mod:`dualvad.stream.watch`)."""
    from dualvad.serve.settings import default_run
    from dualvad.stream.watch import WatchRequest, watch

    try:
        if len(args.inputs) != 1:
            raise ValueError(f"watch follows one URL, got {len(args.inputs)}: {' '.join(args.inputs)}; start "
                             "one watcher per camera (or serve's POST /v1/streams for many)")
        run = args.run or (default_run() if config.run == DEMO_RUN else config.run)
        request = WatchRequest(args.inputs[0], run, args.events, args.webhook, args.max_seconds, args.name,
                               args.vlm or config.eval.model or None,
                               device="cuda" if config.eval.use_gpu else "cpu",
                               batch_size=config.eval.batch_size, max_new_tokens=config.eval.max_new_tokens)
        status = watch(request, config.stream)
    except (FileNotFoundError, ValueError) as error:
        print(f"dualvad watch: error: {error}", file=sys.stderr)
        return 2
    source = status["source"] or {}
    print(f"dualvad watch: {status['state']}: {status['segments']} segments, {status['events']} events, "
          f"{status['vlm_calls']} VLM calls; {source.get('frames_decoded', 0)} frames decoded, "
          f"{source.get('frames_dropped', 0)} dropped, {source.get('reconnects', 0)} reconnects",
          file=sys.stderr)
    return 0


def _require(value: str, key: str, fix: str) -> None:
    if not value:
        raise ConfigError(f"config key {key!r} is empty: {fix}")


def _progress(label: str, unit: str = "videos") -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawn as a progress bar on standard error."""
    return console.counter(label, unit)
