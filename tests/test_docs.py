"""The README and the manual in docs/ name only commands, flags and config keys that exist.

Every ``dualvad SUBCOMMAND --flag ...`` in a code span or a fenced block must be a subcommand of the
``dualvad`` parser, and each ``--flag`` one that subcommand accepts. Every config key in a code span or
block (``sample.budget``, ``ingest.feature=clip``, ``eval.vera.snippet``) must be a key of
:class:`dualvad.config.DualVADConfig`. ``docs/decisions.md`` is left out: it is a dated record, and an entry
may name a flag or key as it was then.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from dualvad.cli import _parser
from dualvad.config import DualVADConfig, setting_default

ROOT = Path(__file__).resolve().parents[1]
HISTORY = {"decisions.md"}  # dated entries: names as they were then
PAGES = sorted([ROOT / "README.md", *(p for p in (ROOT / "docs").glob("*.md") if p.name not in HISTORY),
                *(ROOT / "bench").glob("README.md")])

#: Placeholders the pages use for "any stage" and "any command".
STAGES = ("ingest", "train-scorer", "score", "sample", "build-benchmarks", "finetune", "evaluate")
#: The config sections: the fields of DualVADConfig that are dataclasses (``run`` and ``corpus`` are values).
SECTIONS = tuple(f.name for f in dataclasses.fields(DualVADConfig)
                 if dataclasses.is_dataclass(getattr(DualVADConfig(), f.name)))
#: A dotted name ending in one of these is a file (``stages.py``), not a config key.
FILE_SUFFIXES = {"py", "md", "yaml", "yml", "json", "jsonl", "html", "csv", "parquet", "txt", "png", "log"}

_FENCE = re.compile(r"^( *)```[^\n]*\n(.*?)^\1```", re.S | re.M)
_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_END = {"|", "&&", ";", "#", ">", "2>", "&", "\\"}
#: ``dualvad`` as a command word, not in a path or a module name (dualvad/cli.py, dualvad.config).
_DUALVAD = re.compile(r"(?<![\w./-])dualvad(?=\s|$)")
_KEY = re.compile(r"(?<![\w./-])(" + "|".join(SECTIONS) + r")((?:\.[a-z_][a-z0-9_]*)+)(\.\*)?(?![\w(])")


def code_of(text: str) -> list[str]:
    """The fenced blocks (backslash-continued lines joined) and the inline code spans (on one line) of a
    Markdown page."""
    blocks = [re.sub(r"\\\n\s*", " ", m.group(2)) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("", text)
    return blocks + [" ".join(m.group(2).split()) for m in _SPAN.finditer(prose)]


def commands_in(code: str) -> list[tuple[str, list[str]]]:
    """(subcommand, flags) of every ``dualvad ...`` invocation in ``code``; ``""`` when none is named."""
    found = []
    for line in code.splitlines():
        for part in _DUALVAD.split(line)[1:]:
            words = part.split()
            if words and words[0] in ("--version", "--help", "-h"):
                found.append(("", [words[0]]))
                continue
            if not words or not re.fullmatch(r"[A-Za-z][\w-]*[:,.)]?", words[0]):
                continue  # `dualvad` alone, or followed by prose
            flags = []
            for word in words[1:]:
                if word in _END or word.startswith("#"):
                    break
                word = word.strip("[]()")
                if word.startswith("--"):
                    flags.append(word.split("=", 1)[0].rstrip(".,:;"))
            found.append((words[0].rstrip(":,.)"), flags))
    return found


def keys_in(code: str) -> list[str]:
    """The config keys named in ``code``: ``section.key`` (with or without ``=value``); ``section.*`` and
    file names (``stages.py``) are not keys."""
    keys = []
    for match in _KEY.finditer(code):
        key = match.group(1) + match.group(2)
        if match.group(3) or key.rsplit(".", 1)[1] in FILE_SUFFIXES:
            continue
        keys.append(key)
    return keys


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser, **action.choices}


def command_problems(name: str, flags: list[str], commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """What is wrong with ``dualvad NAME FLAGS``: an unknown subcommand or a flag it does not accept.
    ``STAGE`` stands for each stage command, ``COMMAND`` for each command."""
    targets = {"STAGE": STAGES, "COMMAND": tuple(c for c in commands if c)}.get(name, (name,))
    problems = []
    for target in targets:
        if target not in commands:
            problems.append(f"`dualvad {name}`: no such command")
            continue
        accepted = commands[target]._option_string_actions
        problems += [f"`dualvad {target} {flag}`: no such flag" for flag in flags if flag not in accepted]
    return problems


def key_problem(key: str) -> str | None:
    try:
        setting_default(key)
    except AttributeError:
        return f"`{key}`: no such config key"
    return None


def test_the_pages_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/stages.md", "docs/datasets.md", "docs/detection-and-serving.md",
            "docs/cluster.md", "docs/benchmarks.md", "docs/troubleshooting.md",
            "docs/live-cameras.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_and_flag_named_exists(page: Path) -> None:
    commands = subcommands()
    problems = [problem for code in code_of(page.read_text(encoding="utf-8"))
                for name, flags in commands_in(code) for problem in command_problems(name, flags, commands)]
    assert not problems, "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_config_key_named_exists(page: Path) -> None:
    keys = [key for code in code_of(page.read_text(encoding="utf-8")) for key in keys_in(code)]
    problems = sorted({problem for problem in map(key_problem, keys) if problem})
    assert not problems, "\n".join(problems)


def test_the_checks_find_what_does_not_exist() -> None:
    """The collectors see commands, flags and keys where the pages put them, and the checks flag made-up
    ones: without this, a collector that found nothing would pass every page."""
    sample = ("Run `dualvad sample --run r\n--budget 8 sample.tau=0.2` or\n\n"
              "```\ndualvad frobnicate --run r && dualvad evaluate --compare a=b\n"
              "dualvad score --run r \\\n    --no-such-flag scorer.no_such_key=1\n"
              "dualvad STAGE --dry-run   # any stage\n```\n\n"
              "`bench/scorer.py`, `dualvad.config`, `stages.py`, `ray.get()`, `eval.vera.*`,\n"
              "`eval.vera.snippet`.\n")
    code = code_of(sample)
    found = [command for part in code for command in commands_in(part)]
    assert found == [("frobnicate", ["--run"]), ("evaluate", ["--compare"]),
                     ("score", ["--run", "--no-such-flag"]), ("STAGE", ["--dry-run"]),
                     ("sample", ["--run", "--budget"])]
    keys = [key for part in code for key in keys_in(part)]
    assert keys == ["scorer.no_such_key", "sample.tau", "eval.vera.snippet"]
    commands = subcommands()
    assert command_problems("frobnicate", ["--run"], commands) == ["`dualvad frobnicate`: no such command"]
    assert command_problems("score", ["--run", "--no-such-flag"], commands) == [
        "`dualvad score --no-such-flag`: no such flag"]
    assert command_problems("STAGE", ["--dry-run"], commands) == []
    assert command_problems("COMMAND", ["--dry-run"], commands)  # config, serve, ... have no --dry-run
    assert [key_problem(key) for key in keys] == ["`scorer.no_such_key`: no such config key", None, None]


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_between_the_pages_resolves(page: Path) -> None:
    """A relative link names a file that exists and, after ``#``, one of its headings."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):, mailto:
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", _FENCE.sub("", linked.read_text(encoding="utf-8")), re.M)
            if fragment not in {anchor(h) for h in headings}:
                problems.append(f"{target}: no such heading")
    assert not problems, "\n".join(problems)


def test_anchor_is_githubs() -> None:
    assert anchor("The generated corpus (`dualvad synth`)") == "the-generated-corpus-dualvad-synth"
    assert anchor("What the demo shows, and what it does not") == "what-the-demo-shows-and-what-it-does-not"
