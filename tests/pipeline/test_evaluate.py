"""The evaluation stage on a scored generated corpus with the tiny VLM: predictions, metrics against
scikit-learn, tables, the report in a real browser, re-runs, and a corrupt video as a recorded failure."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from dualvad import schema as S
from dualvad.config import ConfigError, SampleConfig, config_hash
from dualvad.detector_schema import DetectOptions
from dualvad.errors import MissingInputError
from dualvad.eval.scoring import SERVING_THRESHOLD
from dualvad.eval.verdict import FALLBACK_THRESHOLD, Verdict, apply
from dualvad.pipeline.evaluate import run_evaluate, warn_length_mismatches
from dualvad.pipeline.evaluate_models import EvaluationError, ModelSpec, model_specs
from dualvad.pipeline.evaluate_outputs import sampling_text
from dualvad.pipeline.evaluate_predict import EvalWorker
from dualvad.pipeline.evaluate_verdict import SAME_VIDEOS, SCORER_PICKED
from dualvad.pipeline.sample import run_sample, sample_videos, segments_with_scores
from dualvad.rundir import open_run
from dualvad.scorer.data import held_out_validation, labelled_training_videos, video_set_from_segments
from dualvad.stages.runner import Skipped
from dualvad.vlm.model import save_tiny_model

from browser import CHROMIUM, MISSING, render
from media import write_broken_files

MODELS = ["scorer", "vlm/focused", "vlm/uniform", "vlm/random", "verdict"]
VLMS = MODELS[1:-1]
CARD = "---\nlibrary_name: transformers\n---\n\n# tiny\n\nTrained on nothing.\n\n## Evaluation\n\nPending.\n"


def _with(config, section: str, **changes):
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("vlm"))


@pytest.fixture(scope="module")
def evaluated(scored_run, tiny_model):
    """``dualvad evaluate --ablate sampling`` with the tiny model, which has a model card: (config, summary,
    run)."""
    config, _ = scored_run
    config = _with(config, "eval", model=str(tiny_model), ablate="sampling", workers=1, cpus_per_worker=0.5,
                   timeline_videos=3, max_new_tokens=4)
    config = _with(_with(config, "sample", budget=8), "benchmarks", clip_frames=4, image_size=56)
    (tiny_model / "README.md").write_text(CARD)  # as dualvad finetune writes one into its export
    run_sample(config)  # evaluate scores the frames of RUN/samples
    return config, run_evaluate(config), open_run(config.run)


def _predictions(run, model: str, split: str | None = "test") -> list[dict]:
    """A VLM row's predictions of the ``split`` videos (``None``: all it holds, the verdict's validation
    videos too)."""
    rows = pq.read_table(run.path("eval", "predictions", f"{model.replace('/', '-')}.parquet")).to_pylist()
    splits = dict(zip(*run.read_table("samples", columns=[S.VIDEO_ID, S.SPLIT]).to_pydict().values(),
                      strict=True))
    return [row for row in rows if split is None or splits[row[S.VIDEO_ID]] == split]


def test_metrics_of_every_model_equal_scikit_learn(evaluated):
    config, summary, run = evaluated
    metrics = json.loads(Path(run.path("eval", "metrics.json")).read_text())
    assert list(metrics["metrics"]) == MODELS == list(summary.models)
    test = segments_with_scores(run).to_pandas().query("split == 'test'")
    videos = test.groupby(S.VIDEO_ID, sort=True)
    labels = {vid: int(group[S.LABEL].iloc[0] != "Normal") for vid, group in videos}
    for model in VLMS:
        rows = _predictions(run, model)
        assert len(rows) == summary.videos == len(labels) and all(r[S.ERROR] is None for r in rows)
        video_scores = [max(r[S.CLIP_SCORES]) / 10 for r in rows]
        assert metrics["metrics"][model]["video_auc"] == pytest.approx(
            roc_auc_score([labels[r[S.VIDEO_ID]] for r in rows], video_scores))
        truth, scores = [], []
        for row in rows:  # frame level, written out plainly: segment = mean of its samples, else interpolated
            group = videos.get_group(row[S.VIDEO_ID])
            frames, frame_scores = np.array(row[S.FRAMES]), np.array(row[S.FRAME_SCORES])
            for start, end in zip(group[S.START_FRAME], group[S.END_FRAME], strict=True):
                inside = frame_scores[(frames >= start) & (frames < end)]
                centre = (start + end - 1) / 2
                value = inside.mean() if len(inside) else np.interp(centre, frames, frame_scores)
                scores += [value] * (end - start)
            flat = group[S.GT_INTERVALS].iloc[0]
            annotated = np.zeros(int(group[S.NUM_FRAMES].iloc[0]), dtype=int)
            for start, end in np.asarray(flat if flat is not None else [], dtype=int).reshape(-1, 2):
                annotated[start:end] = 1
            truth += annotated.tolist()
        assert metrics["metrics"][model]["frame_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)


def test_each_strategy_looks_at_the_frames_its_sampler_picks(evaluated):
    config, _, run = evaluated
    samples = run.read_table("samples").to_pylist()
    published = {r[S.VIDEO_ID]: r[S.FRAMES] for r in samples if r[S.SPLIT] == "test"}
    # the configured strategy: exactly the frames of RUN/samples (those the benchmarks were built from), of
    # the test videos and, for the verdict's fit, of the scorer's validation videos
    assert {r[S.VIDEO_ID]: r[S.FRAMES] for r in _predictions(run, "vlm/focused")} == published
    held = set(_validation_ids(config))
    assert {r[S.VIDEO_ID]: r[S.FRAMES] for r in _predictions(run, "vlm/focused", split=None)} == published | {
        r[S.VIDEO_ID]: r[S.FRAMES] for r in samples if r[S.VIDEO_ID] in held}
    table = segments_with_scores(run, extra_columns=(S.FEATURE,))
    table = table.filter(np.array(table[S.SPLIT].to_pylist()) == "test")
    for strategy in ("uniform", "random"):  # sampled by the ablation itself, with the recorded settings
        expected, _ = sample_videos(table, dataclasses.replace(config.sample, strategy=strategy))
        got = {r[S.VIDEO_ID]: r[S.FRAMES] for r in _predictions(run, f"vlm/{strategy}")}
        assert got == {r[S.VIDEO_ID]: r[S.FRAMES] for r in expected}
        kept = pq.read_table(run.path("eval", "samples", f"{strategy}.parquet")).to_pylist()
        assert {r[S.VIDEO_ID]: r[S.FRAMES] for r in kept} == got
    for strategy in ("focused", "uniform", "random"):
        for row in _predictions(run, f"vlm/{strategy}"):
            assert len(row[S.FRAME_SCORES]) == 8 and len(row[S.CLIP_SCORES]) == 2  # 8 frames, clips of 4
            assert len(row[S.THUMB_JPEGS]) == 3 and row[S.THUMB_JPEGS][0][:2] == b"\xff\xd8"


def _validation_ids(config) -> list[str]:
    """train-scorer's held-out videos, recomputed from the segments and the scorer's settings."""
    segments = open_run(config.run).read_table("segments")
    train = labelled_training_videos(video_set_from_segments(segments))
    return sorted(held_out_validation(train, config.scorer.val_share, config.scorer.seed)[1].video_ids)


def test_the_verdict_is_fitted_on_the_scorers_validation_videos_and_has_its_row(evaluated):
    config, _, run = evaluated
    recorded = json.loads(Path(run.path("eval", "verdict.json")).read_text())
    verdict = Verdict.from_dict(recorded)
    # 10 training videos, scorer.val_share 0.2: one anomalous and one normal held out, too few to fit
    assert list(verdict.validation_ids) == _validation_ids(config) and len(verdict.validation_ids) == 2
    assert (verdict.source, verdict.scorer_weight, verdict.vlm_weight, verdict.bias, verdict.threshold) == (
        "scorer-only", 1.0, 0.0, 0.0, 0.5)
    assert verdict.reason == ("validation holds 1 anomalous and 1 normal videos; a fit needs at least 2 of "
                              "each: the scorer alone at threshold 0.5")
    assert verdict.vlm_row == "vlm/focused" and not verdict.vlm_used
    assert verdict.caveats == (SCORER_PICKED, SAME_VIDEOS)  # eval.model: a folder not fine-tuned in this run
    metrics = json.loads(Path(run.path("eval", "metrics.json")).read_text())
    counts = metrics["at_threshold"]["verdict"]
    tp, fp, fn, tn = (counts[k] for k in ("true_positives", "false_positives", "false_negatives",
                                          "true_negatives"))
    test = {"videos": tp + fp + fn + tn, "accuracy": pytest.approx((tp + tn) / (tp + fp + fn + tn)),
            "balanced_accuracy": pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)}
    assert metrics["verdict"] == {**recorded, "test": test} and test["videos"] == metrics["videos"]["verdict"]
    # weights (1, 0, 0): the scorer's own scores, so its row's figures
    assert metrics["metrics"]["verdict"] == pytest.approx(metrics["metrics"]["scorer"])
    assert "weight is 0: validation holds 1 anomalous and 1 normal videos" in Path(
        run.path("eval", "report.html")).read_text()


def test_tables_list_every_model_and_every_category(evaluated):
    _, summary, run = evaluated
    text = Path(run.path("eval", "results.md")).read_text()
    models_table, note, categories_table = text.split("\n\n")[:3]
    assert [line.split("|")[1].strip() for line in models_table.splitlines()[2:]] == MODELS
    rows = list(csv.DictReader(Path(run.path("eval", "results.csv")).read_text().splitlines()))
    assert [row["model"] for row in rows] == MODELS and summary.table == text
    # what `dualvad evaluate` prints: the per-category table, one row per model and category
    assert "Per anomaly category" in note and "Per anomaly category" in str(summary)
    metrics = json.loads(Path(run.path("eval", "metrics.json")).read_text())
    categories = sorted(metrics["category_videos"])
    assert categories and all(list(metrics["categories"][model]) == categories for model in MODELS)
    cells = [line.split("|")[1:3] for line in categories_table.splitlines()[2:]]
    assert [(m.strip(), c.strip()) for m, c in cells] == [(m, c) for m in MODELS for c in categories]
    kept = list(csv.DictReader(Path(run.path("eval", "results_categories.csv")).read_text().splitlines()))
    assert [(row["model"], row["category"]) for row in kept] == [(m, c) for m in MODELS for c in categories]
    assert metrics["length_mismatches"] == {}  # the generated corpus states no frame counts


def test_category_metrics_of_the_scorer_equal_scikit_learn(evaluated):
    _, _, run = evaluated
    metrics = json.loads(Path(run.path("eval", "metrics.json")).read_text())
    test = segments_with_scores(run).to_pandas().query("split == 'test'")
    for category, values in metrics["categories"]["scorer"].items():
        subset = test[test[S.LABEL].isin([category, "Normal"])]
        truth, scores, labels, video_scores = [], [], [], []
        for _, group in subset.groupby(S.VIDEO_ID, sort=True):
            spans = (group[S.END_FRAME] - group[S.START_FRAME]).to_numpy()
            scores += np.repeat(group[S.SCORE].to_numpy(), spans).tolist()
            annotated = np.zeros(int(group[S.NUM_FRAMES].iloc[0]), dtype=int)
            flat = group[S.GT_INTERVALS].iloc[0]
            for start, end in np.asarray(flat if flat is not None else [], dtype=int).reshape(-1, 2):
                annotated[start:end] = 1
            truth += annotated.tolist()
            labels.append(int(group[S.LABEL].iloc[0] != "Normal"))
            video_scores.append(group[S.SCORE].max())
        assert metrics["category_videos"][category] == len(labels)
        assert values["frame_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
        assert values["video_auc"] == pytest.approx(roc_auc_score(labels, video_scores), abs=1e-6)


def test_decisions_at_the_serving_threshold_equal_scikit_learn(evaluated):
    _, _, run = evaluated
    metrics = json.loads(Path(run.path("eval", "metrics.json")).read_text())
    # the report's threshold; a request's default is the run's verdict, which falls back to it
    assert metrics["serving_threshold"] == SERVING_THRESHOLD == FALLBACK_THRESHOLD
    assert DetectOptions().threshold is None
    scores = {m: {row[S.VIDEO_ID]: max(row[S.CLIP_SCORES]) / 10 for row in _predictions(run, m)}
              for m in VLMS}
    test = segments_with_scores(run).to_pandas().query("split == 'test'").groupby("video_id")
    scores["scorer"] = test["score"].max().to_dict()
    verdict = Verdict.from_dict(json.loads(Path(run.path("eval", "verdict.json")).read_text()))
    scores["verdict"] = {i: float(apply(verdict, scores["scorer"][i], scores["vlm/focused"][i]))
                         for i in scores["vlm/focused"]}
    thresholds = dict.fromkeys(MODELS, SERVING_THRESHOLD) | {"verdict": verdict.threshold}
    labels = (test["label"].first() != "Normal").astype(int).to_dict()
    for model in MODELS:
        ids = sorted(scores[model])
        truth = [labels[i] for i in ids]
        called = [int(scores[model][i] >= thresholds[model]) for i in ids]
        tn, fp, fn, tp = confusion_matrix(truth, called, labels=[0, 1]).ravel().tolist()
        decided = metrics["at_threshold"][model]
        assert [decided[k] for k in ("true_positives", "false_positives", "false_negatives",
                                     "true_negatives")] == [tp, fp, fn, tn], model
    # the tiny model's architecture is the random preset's: its rows are flagged, the scorer's is not
    assert metrics["warnings"] == {**{m: "random weights (tiny preset, not InternVL3-2B): chance-level by "
                                         "construction" for m in VLMS},
                                   "verdict": f"the VLM's weight is 0: {verdict.reason}"}


def test_model_card_holds_the_metrics_of_every_vlm_row(evaluated):
    """RUN/eval/model_card.md: the evaluated model's card, its Evaluation section replaced by each VLM row's
    metrics (table and model-index metadata, equal to metrics.json); the model's own card is untouched."""
    from huggingface_hub import ModelCard

    config, _, run = evaluated
    metrics = json.loads(Path(run.path("eval", "metrics.json")).read_text())
    card = ModelCard.load(run.path("eval", "model_card.md"))
    assert card.text.startswith("\n# tiny\n\nTrained on nothing.\n\n## Evaluation\n")
    assert "Pending" not in card.text
    expected = [(row, metric, value) for row in VLMS
                for metric, value in metrics["metrics"][row].items() if value is not None]
    assert [(r.dataset_config, r.metric_type, r.metric_value) for r in card.data.eval_results] == expected
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    for row in VLMS:
        cells = [f"{v:.4f}" if v is not None else "n/a" for v in metrics["metrics"][row].values()]
        assert f"| {row} | {metrics['videos'][row]} | " + " | ".join(cells) + " |" in card.text
    assert Path(config.eval.model, "README.md").read_text() == CARD


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_report_renders_in_chromium(evaluated, tmp_path):
    config, summary, run = evaluated
    dom = render(Path(summary.output), tmp_path / "profile", tmp_path / "shot.png")
    assert {"roc-video", "roc-frame"} <= {img.get("id") for img in dom.images}
    assert sum(img.get("class") == "timeline" for img in dom.images) == 3
    text = " ".join(" ".join(dom.text).split())
    test_ids = segments_with_scores(run).to_pandas().query("split == 'test'")["video_id"].unique()
    for shown in (f"Run {run.uri}", f"Corpus {config.corpus}", f"Config hash {config_hash(config)}",
                  "Sampling focused, budget 8 frames per video", f"Serving threshold {SERVING_THRESHOLD:g}",
                  "random weights (tiny preset, not InternVL3-2B): chance-level by construction",
                  "What the metrics measure", f"All test videos ({len(test_ids)})",
                  *(f"{video_id} " for video_id in test_ids)):
        assert shown in text, shown
    assert f"Timelines are drawn for 3 of {len(test_ids)} videos (eval.timeline_videos = 3)" in text
    assert text.count("none drawn") == len(test_ids) - 3


def test_rerun_is_skipped_whatever_the_evaluate_command_says_about_sampling(evaluated):
    # The frames come from RUN/samples: the evaluate command's own sample.* settings change nothing (a run
    # sampled with one budget was once evaluated on another, silently).
    config, summary, run = evaluated
    before = {m: Path(run.path("eval", "predictions", f"{m.replace('/', '-')}.parquet")).stat().st_mtime_ns
              for m in VLMS}
    again = run_evaluate(_with(config, "sample", budget=500, strategy="uniform"))
    after = {m: Path(run.path("eval", "predictions", f"{m.replace('/', '-')}.parquet")).stat().st_mtime_ns
             for m in VLMS}
    assert isinstance(again, Skipped) and before == after


def test_a_corrupt_video_is_a_recorded_failure(evaluated, tiny_model, tmp_path):
    config, _, run = evaluated
    broken = write_broken_files(tmp_path)["text"]
    table = segments_with_scores(run)
    (row, *_), _ = sample_videos(table.slice(0, 8), config.sample)
    worker = EvalWorker(ModelSpec("vlm/x", None, str(tiny_model), "focused"),
                        {"image_size": 56, "clip_frames": 4, "batch_size": 4, "max_new_tokens": 2,
                         "thumbnails": 1, "use_gpu": False, "jpeg_quality": 90})
    result = worker(pq.read_table(_one_row_file(tmp_path, {**row, S.VIDEO_PATH: str(broken)}))).to_pylist()
    assert len(result) == 1 and str(broken) in result[0][S.ERROR] and result[0][S.FRAME_SCORES] is None


def _one_row_file(folder: Path, row: dict) -> Path:
    import pyarrow as pa

    path = folder / "row.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=S.SAMPLES_SCHEMA), path)
    return path


def test_settings_errors_name_the_fix(evaluated, tmp_path):
    config, _, run = evaluated
    with pytest.raises(EvaluationError, match="eval.compare"):
        model_specs(run, _with(config, "eval", ablate="benchmarks").eval, "focused")
    with pytest.raises(ConfigError, match="'ablate' must be one of 'none', 'sampling', 'benchmarks'"):
        _with(config, "eval", ablate="everything")  # refused when the config is built, before the stage
    with pytest.raises(MissingInputError, match="run `dualvad finetune`"):
        model_specs(run, _with(config, "eval", model="").eval, "focused")
    with pytest.raises(MissingInputError, match="fine-tune that run first"):
        settings = _with(config, "eval", ablate="benchmarks", compare=[f"x={tmp_path}"]).eval
        model_specs(run, settings, "focused")


def test_length_mismatches_are_warned_per_video(caplog):
    with caplog.at_level("WARNING", logger="dualvad.pipeline.evaluate"):
        warn_length_mismatches({"Abuse/Abuse028_x264.mp4": (1410, 1412), "b.mp4": (90, 80)})
    assert [record.getMessage() for record in caplog.records] == [
        "evaluate: Abuse/Abuse028_x264.mp4: the annotation gives 1412 frames, the decoder found 1410; "
        "the VERA protocol uses the annotation's 1412",
        "evaluate: b.mp4: the annotation gives 80 frames, the decoder found 90; the VERA protocol uses the "
        "annotation's 80",
    ]


def test_sampling_is_stated_with_the_strategys_own_settings():
    assert sampling_text(SampleConfig(strategy="focused", budget=8, tau=0.1, floor=1)) == (
        "focused, budget 8 frames per video, tau 0.1, floor 1 frame(s) per segment")
    assert sampling_text(SampleConfig(strategy="uniform", budget=16)) == "uniform, budget 16 frames per video"
    assert sampling_text(SampleConfig(strategy="cdf", budget=4, cdf_offset=0.25)) == (
        "cdf, budget 4 frames per video, density offset 0.25")
    assert sampling_text(SampleConfig(strategy="random", budget=4, seed=3)) == (
        "random, budget 4 frames per video, seed 3")
