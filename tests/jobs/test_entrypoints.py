"""The ``ray job submit`` entrypoints under ``jobs/``: one per stage plus the whole pipeline, each answering
``--help`` with its command's usage, and each no more than a call of the CLI (no logic of its own)."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

import pytest

from dualvad.stages.registry import STAGES

JOBS = Path(__file__).resolve().parents[2] / "jobs"
COMMANDS = {path: path.stem.replace("_", "-") for path in sorted(JOBS.glob("*.py"))}


def test_every_stage_and_the_pipeline_have_a_job():
    assert set(COMMANDS.values()) == {*(stage.name for stage in STAGES), "pipeline"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_a_job_answers_help_with_its_commands_usage(path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(path), run_name="__main__")
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: dualvad {COMMANDS[path]} ")


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_a_job_only_calls_the_cli_with_its_command(path):
    tree = ast.parse(path.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == "main"]
    assert len(calls) == 1
    command = calls[0].args[0].elts[0]
    assert isinstance(command, ast.Constant) and command.value == COMMANDS[path]
    defined = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert not defined, f"{path.name} defines {[d.name for d in defined]}: logic belongs in dualvad/"
