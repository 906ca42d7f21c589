"""The ``dualvad`` console script: one subcommand per stage, plus ``config``, ``demo`` and the tools.

Every subcommand takes ``--config FILE`` (YAML, see ``configs/``) and trailing
``key.sub=value`` overrides; its own flags (``--run``, ``--segments`` ...) are shorthands for
overrides, and their help shows the key and its default. ``dualvad config`` prints the effective
config; a stage's ``--dry-run`` prints what it would do. ``dualvad demo`` generates a small corpus
and runs every stage end to end on a local Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence

from dualvad import __version__, console, paths
from dualvad import commands as handlers
from dualvad.config import (
    DEMO_PROFILE,
    ConfigError,
    DualVADConfig,
    load_config,
    setting_choices,
    setting_default,
)
from dualvad.corpus.layout import CorpusFormatError
from dualvad.errors import StageError
from dualvad.eval.scoring import SERVING_THRESHOLD
from dualvad.rundir import open_run
from dualvad.stages.interrupts import StageInterrupted
from dualvad.stages.registry import stage_named

log = logging.getLogger("dualvad")
_DESCRIPTION = ("dualvad: video anomaly detection on Ray. One command per pipeline stage, `pipeline` for "
                "all of them, `demo` to try it on a generated corpus, `detect` and `serve` to use a run.")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 stage failed, 2 bad input)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "inputs"):
        # argparse takes one run of positionals: inputs or overrides after an option arrive as extras
        stray = [item for item in extra if item.startswith("-")]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.inputs, args.overrides = _split_inputs(args.inputs + extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        config = load_config(_config_file(args), _overrides(args))
        with _console(args, config):
            return args.handler(config, args)
    except (ConfigError, CorpusFormatError) as error:
        print(f"dualvad {args.command}: error: {error}", file=sys.stderr)
        return 2
    except StageError as error:
        print(f"dualvad {args.command}: failed: {error}", file=sys.stderr)
        return 1
    except StageInterrupted as interrupted:
        return _interrupted(args.command, interrupted)
    except Exception as error:
        # The signal handler raises StageInterrupted wherever the main thread is; inside Ray's C code it comes
        # back wrapped (a SystemError caused by it): still an interruption, not a failure.
        interrupted = _interruption(error)
        if interrupted is None:
            raise
        return _interrupted(args.command, interrupted)


def _config_file(args: argparse.Namespace) -> str | None:
    """The config file the command reads: ``--config``, else the demo profile for ``demo`` (its own settings
    sit under the user's: a --config file replaces them, overrides change them), else none."""
    if args.config:
        return args.config
    return str(DEMO_PROFILE) if args.command == "demo" else None


def _interrupted(command: str, interrupted: StageInterrupted) -> int:
    print(f"dualvad {command}: {interrupted}; finished work is kept, the same command continues from it",
          file=sys.stderr)
    return 128 + interrupted.signum


def _interruption(error: BaseException) -> StageInterrupted | None:
    """The StageInterrupted among ``error``'s causes and contexts, if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, StageInterrupted):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualvad", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _command(commands, "config", "print the effective config (defaults, --config FILE, overrides) as YAML",
             handlers.cmd_config)
    synth = _command(commands, "synth", "generate a synthetic surveillance corpus", handlers.cmd_synth)
    synth.add_argument("--out", required=True, help="corpus folder to write")
    _setting(synth, "--videos", "number of videos", type=int)
    _setting(synth, "--seed", "random seed", type=int)
    extract = _command(commands, "extract-features", "write the corpus's own 16-frame snippet features in "
                       "the published feature sets' layout (.npy per video and crop, features.json)",
                       handlers.cmd_extract_features)
    _setting(extract, "--corpus", "corpus folder", default="none, required")
    extract.add_argument("--out", required=True, help="folder to write the feature files into")
    _setting(extract, "--layout", "file layout (auto: crops)")
    ingest = _stage_command(commands, "ingest", handlers.cmd_ingest)
    _setting(ingest, "--corpus", "corpus folder", default="none, required")
    _setting(ingest, "--run", "run directory")
    _setting(ingest, "--segments", "segments per video", type=int)
    _setting(ingest, "--features", "folder of per-video .npy feature files to read instead of decoding",
             default="none: decode the videos")
    train = _stage_command(commands, "train-scorer")
    _setting(train, "--run", "run directory")
    _setting(train, "--kind", "the scorer")
    _setting(train, "--workers", "Ray Train workers", type=int)
    score = _stage_command(commands, "score")
    _setting(score, "--run", "run directory")
    sample = _stage_command(commands, "sample")
    _setting(sample, "--run", "run directory")
    _setting(sample, "--budget", "frames per video", type=int)
    _setting(sample, "--strategy", "how frames are allocated")
    _setting(sample, "--tau", "softmax temperature of focused", type=float)
    build = _stage_command(commands, "build-benchmarks")
    _setting(build, "--run", "run directory")
    _setting(build, "--shards", "Parquet shards per benchmark", type=int)
    tune = _stage_command(commands, "finetune")
    _setting(tune, "--run", "run directory")
    _setting(tune, "--model", "'tiny' or 'small' (random presets), a hub id or a folder")
    _setting(tune, "--workers", "Ray Train workers", dest="finetune_workers", type=int)
    evaluate = _stage_command(commands, "evaluate")
    _setting(evaluate, "--run", "run directory")
    _setting(evaluate, "--ablate", "what to compare")
    evaluate.add_argument("--compare", nargs="+", metavar="NAME=RUN",
                          help="runs whose fine-tuned models --ablate benchmarks compares (eval.compare; "
                          "default: none)")
    _setting(evaluate, "--eval-model", "a model folder or hub id", default="RUN/finetune/final")
    pipeline = _command(commands, "pipeline", "run every stage in order (ingest to evaluate), skipping the "
                        "finished ones; one summary line per stage", handlers.cmd_pipeline)
    _setting(pipeline, "--corpus", "corpus folder or URI", default="none, required")
    _setting(pipeline, "--run", "run directory")
    _setting(pipeline, "--features", "folder of per-video .npy feature files to read instead of decoding",
             default="none: decode the videos")
    export = _command(commands, "export-jsonl", "export the benchmarks as InternVL JSONL",
                      handlers.cmd_export)
    _setting(export, "--run", "run directory")
    export.add_argument("--out", help="output folder, a local path or a URI (default: RUN/jsonl)")
    served = _command(commands, "serve", "serve a run's models over HTTP on a local Ray (Ray Serve)",
                      handlers.cmd_serve)
    served.add_argument("--run", help="run directory to serve (default: runs/demo, made by `make demo`)")
    served.add_argument("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    served.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    served.add_argument("--vlm", help="a VLM folder or hub id (default: RUN/finetune/final)")
    served.add_argument("--allowed-root", dest="allowed_roots", action="append", default=[],
                        help="a folder or URI prefix JSON requests may name a video in (repeatable; "
                        "default: the folder of the run's ingested videos)")
    served.add_argument("--allow-stream-host", dest="stream_hosts", action="append", default=[],
                        metavar="HOST", help="a host POST /v1/streams may follow a camera on: a name or IP "
                        "(exact), an IP network (10.0.0.0/8), or * for any (repeatable; default: none)")
    detect = _command(commands, "detect", "score new, unlabelled videos with a trained run (no Ray, no "
                      "server)", handlers.cmd_detect, inputs=True)
    detect.add_argument("--run", help="run directory whose scorer and VLM detect (run; default: runs/demo)")
    detect.add_argument("--vlm", help="a VLM folder or hub id (default: eval.model, else "
                        "RUN/finetune/final)")
    detect.add_argument("--out", help="JSON Lines file, one line per video (default: standard output)")
    detect.add_argument("--report", metavar="FILE.html", help="also write one self-contained HTML page: "
                        "each video's verdict and score timeline (default: none)")
    detect.add_argument("--budget", dest="frame_budget", type=int,
                        help="frames judged per video (default: the run's sample.budget)")
    detect.add_argument("--strategy", dest="frame_strategy", metavar=_choices_metavar("sample.strategy"),
                        help="how frames are allocated (default: the run's sample.strategy)")
    detect.add_argument("--threshold", type=float,
                        help="is_anomalous = video_score >= threshold (default: the run's verdict threshold, "
                        f"RUN/eval/verdict.json; {SERVING_THRESHOLD:g} before the run is evaluated)")
    detect.add_argument("--no-explain", dest="no_explain", action="store_true",
                        help="skip the clip explanations (faster)")
    watch = _command(commands, "watch", "follow a live camera (RTSP, HLS, a growing file) with a trained "
                     "run: events as JSON Lines, until Ctrl-C or --max-seconds", handlers.cmd_watch,
                     inputs=("URL", "rtsp://..., http(s)://.../playlist.m3u8, or a file being written; "
                             "key.sub=value items are config overrides"))
    watch.add_argument("--run", help="run directory whose scorer and VLM detect (default: runs/demo)")
    watch.add_argument("--events", metavar="FILE.jsonl", help="append closed events here, each id once "
                       "(default: standard output)")
    watch.add_argument("--webhook", metavar="URL", help="also POST every event opening and closing here "
                       "(default: none)")
    watch.add_argument("--max-seconds", dest="max_seconds", type=float,
                       help="stop after this many seconds (default: run until SIGINT or SIGTERM)")
    watch.add_argument("--name", help="the stream's id in events and in their ids (default: the URL)")
    watch.add_argument("--vlm", help="a VLM folder or hub id (default: eval.model, else RUN/finetune/final)")
    demo = _command(commands, "demo", "run every stage on a generated corpus", handlers.cmd_demo)
    demo.add_argument("--run", help="run directory (default: runs/demo)")
    _setting(demo, "--videos", "videos in the generated corpus", type=int,
             default=f"{setting_default('synth.videos', load_config(DEMO_PROFILE))}, from the demo profile "
             f"{_PROFILE_SHOWN}")
    return parser


#: The demo profile as the help names it: its path inside the package.
_PROFILE_SHOWN = DEMO_PROFILE.relative_to(DEMO_PROFILE.parents[2]).as_posix()
_EPILOG = ("Every config key can be set with a trailing key.sub=value override; `dualvad config` prints "
           "them all with their values, `dualvad COMMAND --help` a command's flags with their defaults.")


def _stage_command(commands, name: str, handler: Callable | None = None) -> argparse.ArgumentParser:
    """The sub-command of registered stage ``name``, its help from the registry."""
    return _command(commands, name, stage_named(name).summary, handler or handlers.cmd_stage)


_FILE_INPUTS = ("VIDEO_OR_FOLDER", "video files or folders of them; key.sub=value items are config overrides")


def _command(commands, name: str, help_text: str, handler: Callable,
             inputs: bool | tuple[str, str] = False) -> argparse.ArgumentParser:
    """A sub-command; ``inputs``: its positionals are inputs (files or folders; or ``(metavar, help)`` of
    other inputs), and ``key.sub=value`` overrides among them (split by :func:`_split_inputs`)."""
    sub = commands.add_parser(name, help=help_text, description=help_text, epilog=_EPILOG)
    base = (f"the demo profile {_PROFILE_SHOWN}, which a FILE replaces" if name == "demo"
            else "the embedded defaults, which `dualvad config` prints")
    sub.add_argument("--config", metavar="FILE", help=f"YAML config (see configs/; default: {base})")
    if inputs:
        metavar, text = inputs if isinstance(inputs, tuple) else _FILE_INPUTS
        sub.add_argument("inputs", nargs="+", metavar=metavar, help=text)
    else:
        sub.add_argument("overrides", nargs="*", metavar="key.sub=value",
                         help="config overrides (`dualvad config` lists every key with its value)")
    if handler in (handlers.cmd_stage, handlers.cmd_ingest, handlers.cmd_demo, handlers.cmd_pipeline):
        sub.add_argument("--force", action="store_true",
                         help="redo the stage(s) even when the output matches these inputs and settings")
        sub.add_argument("--verbose", action="store_true",
                         help="show every log record, Ray's worker output and Ray Data's progress bars on "
                         f"the console too (default: they go to RUN/{paths.LOGS}/, the console shows "
                         "progress bars, summaries and warnings)")
    if handler in (handlers.cmd_stage, handlers.cmd_ingest):
        sub.add_argument("--dry-run", dest="dry_run", action="store_true",
                         help="print what the stage would do (inputs, skip or run and why, work staged) and "
                         "exit; runs, locks and writes nothing")
    sub.set_defaults(handler=handler)
    return sub


def _setting(parser: argparse.ArgumentParser, flag: str, text: str, dest: str | None = None,
             default: str | None = None, **kwargs) -> None:
    """A flag that is a shorthand for a config key (``_FLAG_KEYS``): its help names the key and its embedded
    default (or ``default``, said in words), an enumerated key's metavar its choices. The choices are shown,
    not enforced here: the config loader refuses a wrong one as it does in an override."""
    dest = dest or flag.lstrip("-").replace("-", "_")
    key = _FLAG_KEYS[dest]
    shown = default if default is not None else setting_default(key)
    # the choices, else the flag's own name (not its dest: --workers, not FINETUNE_WORKERS)
    kwargs["metavar"] = _choices_metavar(key) or flag.lstrip("-").upper().replace("-", "_")
    parser.add_argument(flag, dest=dest, help=f"{text} ({key}; default: {shown})".replace("%", "%%"),
                        **kwargs)


def _choices_metavar(key: str) -> str | None:
    """``{a,b,c}`` for an enumerated config key, as argparse shows ``choices``."""
    choices = setting_choices(key)
    return "{" + ",".join(str(choice) for choice in choices) + "}" if choices else None


def _split_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """(paths, overrides): an item ``key.sub=value`` (a dotted name before the ``=``) that is not an existing
    path is a config override; a URL with a query (``http://host/x.m3u8?token=a``) is an input."""
    overrides = [item for item in items if _OVERRIDE.match(item) and not os.path.exists(item)]
    return [item for item in items if item not in overrides], overrides


_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")

# Flags that are shorthands for config keys.
_FLAG_KEYS = {"corpus": "corpus", "run": "run", "segments": "ingest.segments", "features": "ingest.features",
              "layout": "ingest.features_layout",
              "videos": "synth.videos", "seed": "synth.seed", "kind": "scorer.kind",
              "workers": "scorer.workers", "budget": "sample.budget", "strategy": "sample.strategy",
              "tau": "sample.tau", "shards": "benchmarks.shards", "model": "finetune.model",
              "finetune_workers": "finetune.workers", "ablate": "eval.ablate", "eval_model": "eval.model"}


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = [f"{key}={getattr(args, flag)}" for flag, key in _FLAG_KEYS.items()
             if getattr(args, flag, None) is not None]
    if getattr(args, "compare", None):
        extra.append(f"eval.compare={json.dumps(args.compare)}")
    return list(args.overrides) + extra


def _console(args: argparse.Namespace, config: DualVADConfig) -> contextlib.AbstractContextManager:
    """The command's console (:mod:`dualvad.console`): a command that runs stages (not ``--dry-run``) logs
    to ``RUN/logs/`` and shows bars, summaries and warnings (all of it with ``--verbose``); the others show
    every log record."""
    if not hasattr(args, "verbose") or getattr(args, "dry_run", False):
        return console.session()
    return console.run_session(open_run(config.run), args.command, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
