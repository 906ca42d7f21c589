"""The console script: synth, ingest and demo end to end, and exit codes for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from dualvad.cli import main
from dualvad.corpus import read_corpus

from media import write_broken_files


def test_synth_writes_a_readable_corpus(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "c"), "--videos", "4", "--seed", "3",
                 "synth.seconds=1.0"]) == 0
    records = read_corpus(tmp_path / "c")
    assert len(records) == 4
    assert "synth: 4 videos" in capsys.readouterr().out


def test_demo_runs_every_stage_and_prints_outputs(ray_session, tmp_path, capsys):
    run = tmp_path / "demo"
    # Every stage, with the smallest settings that still exercise it: 12 short videos, 56 px frames,
    # 2 fine-tuning steps on 2 workers, 2 generated tokens per explanation.
    code = main(["demo", "--run", str(run), "--videos", "12", "synth.seconds=1.0",
                 "ingest.segments=8", "ingest.cpus_per_worker=0.5", "scorer.epochs=2",
                 "scorer.report_every=1", "scorer.cpus_per_worker=0.5", "sample.budget=8",
                 "benchmarks.image_size=56", "benchmarks.clip_frames=4", "finetune.max_steps=2",
                 "finetune.report_every=2", "finetune.max_length=512", "eval.max_new_tokens=2",
                 "eval.cpus_per_worker=0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    for stage, folder in [("ingest", "segments"), ("train-scorer", "scorer/model"),
                          ("score", "scores"), ("sample", "samples"), ("build-benchmarks", "benchmarks"),
                          ("finetune", "finetune/final"), ("evaluate", "eval/report.html")]:
        assert f"{stage:<12} {run}/{folder}" in out
    assert (run / "benchmarks" / "manifest.json").is_file()
    assert (run / "finetune" / "final" / "config.json").is_file()
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert list(metrics["metrics"]) == ["scorer", "vlm/focused"]


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


def test_ingest_without_corpus_is_a_clear_error(capsys):
    assert main(["ingest", "--run", "/tmp/x"]) == 2
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
