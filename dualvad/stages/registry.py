"""The stages in their order: the one list that the CLI, ``jobs/``, ``dualvad pipeline``, ``--dry-run`` and
error messages ("run `dualvad ingest` first") read.

Each entry declares a stage: its name (the CLI command and the ``jobs/`` file), its output folder in the
run directory (:mod:`dualvad.paths`), the earlier outputs it reads, and its entry point, a function
``(config, force=False) -> summary`` named as ``module:function`` and imported only when the stage runs (the
stage modules are on Ray's floor; this list is not).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dualvad import paths


@dataclass(frozen=True)
class Stage:
    """A stage's declaration: ``name`` (its CLI command), ``output`` (a :mod:`dualvad.paths` folder),
    ``inputs`` (the outputs of earlier stages in the same run that it reads) and ``entry``
    (``module:function``, its entry point; empty for stages declared outside this registry, as tests do)."""

    name: str
    output: str
    inputs: tuple[str, ...] = ()
    entry: str = ""
    summary: str = ""  # one line: what the stage does (the CLI command's help)

    def entry_point(self) -> Callable[..., Any]:
        """The stage's function ``(config, force=False) -> summary``, imported now."""
        module, _, function = self.entry.partition(":")
        return getattr(importlib.import_module(module), function)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", paths.SEGMENTS, (), "dualvad.pipeline.ingest:run_ingest",
          "decode videos into K segments with features"),
    Stage("train-scorer", paths.SCORER, (paths.SEGMENTS,), "dualvad.train.train_scorer:run_train_scorer",
          "train the segment scorer (Ray Train)"),
    Stage("score", paths.SCORES, (paths.SEGMENTS, paths.SCORER), "dualvad.pipeline.score:run_score",
          "score every segment with the trained scorer"),
    Stage("sample", paths.SAMPLES, (paths.SEGMENTS, paths.SCORES), "dualvad.pipeline.sample:run_sample",
          "allocate a frame budget per video"),
    Stage("build-benchmarks", paths.BENCHMARKS, (paths.SAMPLES,),
          "dualvad.pipeline.build_benchmarks:run_build_benchmarks", "build the image and video benchmarks"),
    Stage("finetune", paths.FINETUNE, (paths.BENCHMARKS,), "dualvad.train.finetune:run_finetune",
          "fine-tune the VLM on both benchmarks (Ray Train + DeepSpeed)"),
    Stage("evaluate", paths.EVAL, (paths.SEGMENTS, paths.SCORES, paths.SAMPLES),
          "dualvad.pipeline.evaluate:run_evaluate",
          "evaluate the scorer and the fine-tuned VLM on the test split"),
)

#: Which stage writes each output: named in errors about a missing or corrupt input.
WRITER: dict[str, str] = {stage.output: stage.name for stage in STAGES}


def stage_named(name: str) -> Stage:
    """The registered stage called ``name`` (a CLI command).

    Raises:
        KeyError: no such stage; the message lists the stages.
    """
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(f"no stage {name!r}; the stages: {', '.join(s.name for s in STAGES)}")


def writer_of(output: str) -> str:
    """The stage that writes ``output`` (the output's own name when no registered stage does)."""
    return WRITER.get(output, output)
