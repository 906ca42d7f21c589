"""The console script: synth, ingest and demo end to end, exit codes for bad input, and the settings it
shows (config, --help, --version, a stage's config.yaml and --dry-run)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from dualvad import paths
from dualvad import schema as S
from dualvad.cli import _parser, main
from dualvad.config import DEMO_PROFILE, load_config
from dualvad.corpus import read_corpus
from dualvad.rundir import RunDir, open_run
from dualvad.scorer.trained import TrainedScorer
from dualvad.stages.config import StagesConfig
from dualvad.stages.records import read_record
from dualvad.stages.registry import STAGES, Stage
from dualvad.stages.runner import run_stage

from media import write_broken_files

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_synth_writes_a_readable_corpus(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "c"), "--videos", "4", "--seed", "3",
                 "synth.seconds=1.0"]) == 0
    records = read_corpus(tmp_path / "c")
    assert len(records) == 4
    assert "synth: 4 videos" in capsys.readouterr().out


def test_demo_runs_every_stage_and_prints_outputs(tiny_demo):
    run, code, out = tiny_demo
    assert code == 0, out
    for stage, folder in [("ingest", "segments"), ("train-scorer", "scorer/model"),
                          ("score", "scores"), ("sample", "samples"), ("build-benchmarks", "benchmarks"),
                          ("finetune", "finetune/final"), ("evaluate", "eval/report.html")]:
        assert f"{stage:<12} {run}/{folder}" in out
        written = load_config(run / folder.split("/")[0] / paths.CONFIG_FILE)  # each output explains itself
        assert (written.run, written.sample.budget, written.finetune.max_steps) == (str(run), 8, 2)
    assert (run / "benchmarks" / "manifest.json").is_file()
    assert (run / "finetune" / "final" / "config.json").is_file()
    # scorer.checkpoint=last (the default): the scorer is the last report's, whatever its validation loss
    history = json.loads((run / "scorer" / paths.SCORER_HISTORY_FILE).read_text())
    kept = json.loads((run / "scorer" / paths.SCORER_METRICS_FILE).read_text())
    assert [report["epoch"] for report in history] == [0, 1] and kept == history[-1]
    assert "train-scorer: " in out and "epoch 1 kept (last; val loss " in out
    # scorer.ensemble=5 (the default): Ray Train trained five members, from different draws, saved as one
    members = TrainedScorer.load(run / "scorer" / paths.SCORER_MODEL_DIR).model.members
    assert len(members) == 5
    first, second = (member.state_dict() for member in members[:2])
    assert not all(torch.equal(first[key], second[key]) for key in first)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert list(metrics["metrics"]) == ["scorer", "vlm/focused", "verdict"]
    # the VLM is the tiny random preset fine-tuned for 2 steps: flagged in metrics.json and the report; the
    # verdict gives it no weight (a handful of validation videos: the scorer alone), and says why
    note = (f"tiny preset: random initial weights fine-tuned in {run}, not InternVL3-2B; a smoke-test model, "
            "expect near-chance scores")
    verdict = json.loads((run / "eval" / paths.VERDICT_FILE).read_text())
    assert verdict["vlm_weight"] == 0.0 and verdict["reason"] == metrics["verdict"]["reason"] != ""
    assert metrics["warnings"] == {"vlm/focused": note,
                                   "verdict": f"the VLM's weight is 0: {verdict['reason']}"}
    assert note in (run / "eval" / "report.html").read_text()
    assert f"demo: open the report {run}/eval/report.html" in out
    assert f"`dualvad serve --run {run}`" in out


def test_the_scorer_trained_in_one_process_is_the_stage_s(tiny_demo):
    """``train_in_process`` (bench/scorer_seeds.py's way, no Ray) on the demo run's segments, with the
    recorded settings: the same five members as Ray Train's worker gave."""
    from dualvad.scorer.data import (
        held_out_validation,
        labelled_training_videos,
        training_segments,
        video_set_from_segments,
    )
    from dualvad.train.train_scorer import train_in_process

    run, code, out = tiny_demo
    assert code == 0, out
    saved = TrainedScorer.load(run / "scorer" / paths.SCORER_MODEL_DIR)
    settings, ingest = saved.config, load_config(run / paths.SEGMENTS / paths.CONFIG_FILE).ingest
    table = open_run(str(run)).read_table(paths.SEGMENTS)
    videos = labelled_training_videos(video_set_from_segments(training_segments(table)))
    train, _ = held_out_validation(videos, settings.val_share, settings.seed)
    in_process = train_in_process(settings, train, ingest)
    np.testing.assert_array_equal(in_process.normalizer.mean, saved.normalizer.mean)
    assert settings.ensemble == 5 and in_process.model.state_dict().keys() == saved.model.state_dict().keys()
    # Not bit for bit: DDP's bucketed all-reduce rounds some gradients differently in the last bits, and
    # Adam's normalisation carries that into the weights (up to 7e-4 after these 2 epochs); the scores agree
    # to well under the third decimal that the benchmarks' AUCs show.
    features = video_set_from_segments(table).features
    np.testing.assert_allclose(in_process.score(features), saved.score(features), atol=1e-4)


def test_ingest_exits_1_when_too_many_videos_fail(ray_session, tmp_path, capsys):
    corpus = tmp_path / "c"
    assert main(["synth", "--out", str(corpus), "--videos", "2", "synth.seconds=1.0"]) == 0
    victim = read_corpus(corpus)[0]
    shutil.copy(write_broken_files(tmp_path / "broken")["text"], victim.path)
    code = main(["ingest", "--corpus", str(corpus), "--run", str(tmp_path / "run"),
                 "--segments", "4", "stages.max_failure_share=0.1", "ingest.cpus_per_worker=0.5"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 of 2 videos failed" in err and "_failures.parquet" in err and "nothing was published" in err


def test_console_script_reports_bad_config_with_exit_2(tmp_path):
    script = Path(sys.executable).parent / "dualvad"
    result = subprocess.run([str(script), "ingest", "--corpus", str(tmp_path), "--run",
                             str(tmp_path / "r"), "ingest.segmentz=4"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown config key 'ingest.segmentz'" in result.stderr


def test_ingest_without_corpus_is_a_clear_error(tmp_path, capsys):
    # the run folder under tmp_path: a fixed /tmp path made this test depend on what else was in /tmp
    assert main(["ingest", "--run", str(tmp_path / "run")]) == 2
    assert "corpus" in capsys.readouterr().err


def test_an_unknown_strategy_exits_2_with_the_valid_ones_before_any_stage_work(tmp_path, capsys):
    code = main(["sample", "--run", str(tmp_path / "run"), "--strategy", "focussed"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("dualvad sample: error: config key 'sample.strategy' must be one of 'focused', "
                           "'uniform', 'random', 'cdf', got 'focussed'")
    assert not (tmp_path / "run").exists()


def test_zero_segments_exits_2_before_decoding(tmp_path, capsys):
    code = main(["ingest", "--corpus", str(tmp_path / "c"), "--run", str(tmp_path / "run"),
                 "--segments", "0"])
    assert code == 2
    assert "config key 'ingest.segments' must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_version_is_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"dualvad {metadata.version('dualvad')}\n"


def test_config_prints_the_effective_config_as_yaml_that_loads_back(tmp_path, capsys):
    args = ["--config", str(CONFIGS / "smoke.yaml"), "sample.budget=8", "ingest.feature=clip"]
    assert main(["config", *args]) == 0
    out = capsys.readouterr().out
    expected = load_config(CONFIGS / "smoke.yaml", ["sample.budget=8", "ingest.feature=clip"])
    assert out.startswith("# dualvad ") and yaml.safe_load(out)["sample"]["budget"] == 8
    (tmp_path / "effective.yaml").write_text(out)
    assert load_config(tmp_path / "effective.yaml") == expected
    assert main(["config", "sample.budgt=8"]) == 2
    assert "unknown config key 'sample.budgt'" in capsys.readouterr().err


def test_demo_reads_the_profile_a_config_file_replaces_and_overrides_change(tmp_path, monkeypatch):
    """``dualvad demo`` runs the demo profile over the embedded defaults; ``--config FILE`` runs FILE over
    them instead (none of the profile's keys left); overrides and flags change either."""
    import dualvad.commands as commands

    seen = []
    monkeypatch.setattr(commands, "cmd_demo", lambda config, args: seen.append(config) or 0)
    run = str(tmp_path / "demo")
    assert main(["demo", "--run", run, "finetune.lr=0.001"]) == 0
    assert main(["demo", "--run", run, "--config", str(CONFIGS / "smoke.yaml"), "--videos", "5"]) == 0
    profiled, filed = seen
    assert profiled == load_config(DEMO_PROFILE, ["finetune.lr=0.001", f"run={run}"])
    assert (profiled.synth.videos, profiled.finetune.model, profiled.finetune.lr) == (320, "small", 0.001)
    assert filed == load_config(CONFIGS / "smoke.yaml", [f"run={run}", "synth.videos=5"])
    assert (filed.synth.videos, filed.finetune.model, filed.ingest.segments) == (5, "tiny", 8)


def test_the_demo_help_names_the_profile_and_its_value(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "(synth.videos; default: 320, from the demo profile dualvad/profiles/demo.yaml)" in out
    assert "default: the demo profile dualvad/profiles/demo.yaml, which a FILE replaces" in out
    assert load_config(DEMO_PROFILE).synth.videos == 320


def test_every_flag_of_every_command_shows_its_default_and_enumerated_keys_their_choices(monkeypatch, capsys):
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.nargs != 0 and not action.required:  # optional values
                assert "default:" in action.help, f"dualvad {name} {action.option_strings[0]}"
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal's width
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    out = capsys.readouterr().out
    assert "[--strategy {focused,uniform,random,cdf}]" in out
    assert "how frames are allocated (sample.strategy; default: focused)" in out
    assert "--budget BUDGET" in out and "frames per video (sample.budget; default: 16)" in out
    assert "config overrides (`dualvad config` lists every key with its value)" in out


def scored_toy_run(root: Path, videos: int = 4, segments: int = 4, frames: int = 40) -> RunDir:
    """A run whose segments and scores were published by the runner without Ray (toy stages writing the
    columns the sample stage reads): ``videos`` normal test videos of ``frames`` frames each."""
    run = open_run(str(root))
    rows = [{S.VIDEO_ID: f"v{v}", S.SEGMENT_INDEX: k, S.START_FRAME: k * frames // segments,
             S.END_FRAME: (k + 1) * frames // segments, S.FPS: 10.0, S.NUM_FRAMES: frames, S.LABEL: "Normal",
             S.SPLIT: "test", S.VIDEO_PATH: f"/corpus/v{v}.mp4", S.GT_INTERVALS: None}
            for v in range(videos) for k in range(segments)]
    segments_schema = pa.schema([field for field in S.SEGMENTS_SCHEMA if field.name in rows[0]])
    scores = [{S.VIDEO_ID: row[S.VIDEO_ID], S.SEGMENT_INDEX: row[S.SEGMENT_INDEX],
               S.SCORE: 0.2 * row[S.SEGMENT_INDEX]} for row in rows]
    tables = [(Stage("ingest", paths.SEGMENTS), pa.Table.from_pylist(rows, schema=segments_schema)),
              (Stage("score", paths.SCORES, (paths.SEGMENTS,)),
               pa.Table.from_pylist(scores, schema=S.SCORES_SCHEMA))]
    for stage, table in tables:
        run_stage(stage, run, {}, lambda context, t=table: context.out.write_table(t, "part-0.parquet"),
                  StagesConfig())
    return run


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_sample_explains_itself_dry_runs_and_a_rejected_run_keeps_the_earlier_samples(tmp_path, capsys):
    run = scored_toy_run(tmp_path / "run")
    root = Path(run.root)
    assert main(["sample", "--run", run.uri, "--dry-run", "--budget", "8"]) == 0
    inputs = {name: read_record(run, name)["fingerprint"] for name in (paths.SEGMENTS, paths.SCORES)}
    first = capsys.readouterr().out.splitlines()
    assert first[0] == "sample --dry-run: would run: no output yet"
    assert first[2] == f"  inputs       segments {inputs['segments']}, scores {inputs['scores']}"
    assert " ".join(line.strip() for line in first[4:7]) == (  # wrapped at 110 columns
        "settings     sample.strategy=focused, sample.budget=8, sample.tau=0.1, sample.floor=1, "
        "sample.cdf_offset=0.1, sample.seed=0, sample.within_decode_window=True, sample.window_anchors=True")
    assert first[-1] == "nothing was run or written" and not root.joinpath(paths.SAMPLES).exists()

    assert main(["sample", "--run", run.uri, "--budget", "8"]) == 0
    assert capsys.readouterr().out.startswith("sample: 4 videos, 32 frames selected, 0 failures")
    good = _files(root / paths.SAMPLES)
    written = load_config(root / paths.SAMPLES / paths.CONFIG_FILE)  # the settings it ran with
    assert written == load_config(None, [f"run={run.uri}", "sample.budget=8"])
    assert main(["sample", "--run", run.uri, "--budget", "8", "--dry-run"]) == 0
    record = read_record(run, paths.SAMPLES)
    assert capsys.readouterr().out.splitlines()[0] == (
        f"sample --dry-run: up to date, would skip (finished {record['finished']})")
    assert main(["sample", "--run", run.uri, "--budget", "6", "--strategy", "uniform", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "sample --dry-run: would run: sample.budget 8 -> 6; sample.strategy focused -> uniform")

    # Rejected runs: every video fails (41 frames of 40), or the config is refused (budget 0).
    assert main(["sample", "--run", run.uri, "--budget", "41"]) == 1
    assert "4 of 4 videos failed" in capsys.readouterr().err
    assert main(["sample", "--run", run.uri, "--budget", "0"]) == 2
    assert "config key 'sample.budget' must be >= 1, got 0" in capsys.readouterr().err
    assert _files(root / paths.SAMPLES) == good  # the earlier samples, byte for byte


def test_pipeline_with_another_runs_scorer_skips_train_scorer(tmp_path, monkeypatch, capsys):
    """score.scorer_run names the scorer score uses, so the pipeline does not train one (on an unlabelled
    corpus train-scorer could not); every other stage runs, in order."""
    import dualvad.commands as commands
    import dualvad.pipeline.runtime as runtime

    ran = []

    class Summary:
        output = "out"

    monkeypatch.setattr(runtime, "ensure_ray", lambda settings: None)  # no stage runs: no Ray wanted
    monkeypatch.setattr(commands, "_run_stage", lambda stage, config, force: ran.append(stage) or Summary())
    other = str(tmp_path / "other-run")
    config = load_config(None, [f"run={tmp_path / 'run'}", f"score.scorer_run={other}"])
    outputs = commands.run_pipeline(config)
    assert ran == [stage.name for stage in STAGES if stage.name != "train-scorer"] and "score" in ran
    assert list(outputs) == ran
    said = capsys.readouterr().out
    assert f"train-scorer: skipped, score uses the scorer of {other} (score.scorer_run)" in said


def test_an_interruption_wrapped_by_c_code_is_still_an_interruption():
    """SIGTERM's StageInterrupted, raised by the handler while Ray's C code ran, came back as the cause of a
    SystemError (a failed exit 1 with a traceback); main finds it in the chain and exits 143."""
    import signal

    from dualvad.cli import _interruption
    from dualvad.stages.interrupts import StageInterrupted

    interrupted = StageInterrupted(signal.SIGTERM)
    try:
        try:
            raise interrupted
        except StageInterrupted as cause:
            raise SystemError("<built-in method __new__> returned a result with an exception set") from cause
    except SystemError as wrapped:
        assert _interruption(wrapped) is interrupted
    assert _interruption(ValueError("a real failure")) is None


@pytest.mark.parametrize("command", ["detect", "serve"])
def test_without_run_or_demo_run_detect_and_serve_say_the_same(command, tmp_path, monkeypatch, capsys):
    """No --run and no runs/demo here: both commands name the two ways out, with the bad-input code."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.mp4").write_bytes(b"not read")
    assert main([command, *(["v.mp4"] if command == "detect" else [])]) == 2
    assert "runs/demo does not exist: run `make demo` first, or pass --run RUN" in capsys.readouterr().err


def test_help_is_plain_text(capsys):
    """No reStructuredText markup (``...``, :func:) in what --help prints, for the program and each
    command."""
    commands = _parser()._subparsers._group_actions[0].choices
    for argv in (["--help"], *([name, "--help"] for name in commands)):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "``" not in out and ":func:" not in out and ":class:" not in out, (argv, out)


@pytest.mark.parametrize(("flags", "message"), [
    (["--budget", "0"], "budget must be an integer >= 1 (or None: the run's sample.budget), got 0"),
    (["--strategy", "everything"], "strategy must be one of focused, uniform, random, cdf"),
    (["--threshold", "1.5"], "threshold must be a number in [0, 1] (or None: the run's verdict threshold), "
                                "got 1.5"),
])
def test_detect_names_a_bad_option_in_one_line(flags, message, tmp_path, capsys):
    """The options model's own message, as `dualvad detect: error: ...` and the bad-input code, before any
    model is loaded (the run need not exist)."""
    (tmp_path / "v.mp4").write_bytes(b"not read")
    assert main(["detect", "--run", str(tmp_path / "run"), *flags, str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dualvad detect: error: ") and message in err[-1], err
