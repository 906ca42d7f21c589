"""Segment and video scores from a VLM's answers, metrics per model, and the result tables (Markdown,
CSV and HTML from one column list)."""

import csv
import html
import io
import re

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dualvad.eval.config import VeraSettings
from dualvad.eval.results import ModelResult, VideoResult, category_metrics, length_mismatches, model_metrics
from dualvad.eval.scoring import segment_scores_from_samples, top_positions, video_score_from_clips
from dualvad.eval.tables import (
    CATEGORY_COLUMNS,
    COLUMNS,
    ScoreCell,
    category_rows,
    csv_table,
    grid,
    html_table,
    markdown_table,
    results_markdown,
    threshold_rows,
    video_rows,
)
from dualvad.eval.vera import VeraVideo, vera_frame_auc


def test_segment_scores_mean_inside_and_interpolate_between_samples():
    bounds = np.array([[0, 4], [4, 8], [8, 12]])
    scores = segment_scores_from_samples(bounds, np.array([1, 2, 9]), np.array([0.2, 0.4, 1.0]))
    # segment 1 has no sample: centre 5.5 lies 3.5/7 of the way from frame 2 (0.4) to frame 9 (1.0)
    np.testing.assert_allclose(scores, [0.3, 0.7, 1.0], rtol=1e-6)
    assert scores.dtype == np.float32


def test_segment_scores_need_samples():
    with pytest.raises(ValueError, match="at least one frame"):
        segment_scores_from_samples(np.array([[0, 4]]), np.array([], dtype=int), np.array([]))


def test_video_score_is_the_top_clip_over_ten_and_top_positions_break_ties_early():
    assert video_score_from_clips(np.array([3.0, 7.5])) == 0.75
    np.testing.assert_array_equal(top_positions(np.array([0.1, 0.9, 0.9, 0.2]), 2), [1, 2])
    with pytest.raises(ValueError, match="at least one judged clip"):
        video_score_from_clips(np.array([]))


def _video(index: int, anomalous: bool, scores: list[float]) -> VideoResult:
    bounds = np.array([[0, 5], [5, 10]])
    return VideoResult(f"v{index}", "Fight" if anomalous else "Normal", 10, 10.0,
                       [(5, 10)] if anomalous else [], bounds, np.array(scores, dtype=np.float32),
                       max(scores))


def test_model_metrics_equal_scikit_learn():
    videos = [_video(0, True, [0.2, 0.9]), _video(1, False, [0.1, 0.3]), _video(2, True, [0.4, 0.35]),
              _video(3, False, [0.5, 0.2])]
    features = {v.video_id: np.eye(2) for v in videos}
    metrics, undefined = model_metrics(videos, features, VeraSettings())
    frame_truth = np.concatenate([np.r_[np.zeros(5), np.ones(5)] if v.is_anomalous else np.zeros(10)
                                  for v in videos])
    frame_scores = np.concatenate([np.repeat(v.segment_scores, 5) for v in videos])
    assert undefined == {}
    assert metrics["video_auc"] == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.9, 0.3, 0.4, 0.5]))
    assert metrics["frame_auc"] == pytest.approx(roc_auc_score(frame_truth, frame_scores))
    assert metrics["frame_ap"] == pytest.approx(average_precision_score(frame_truth, frame_scores))
    assert 0.0 <= metrics["frame_auc_vera"] <= 1.0


def test_model_metrics_say_why_they_are_undefined():
    videos = [_video(0, False, [0.1, 0.2]), _video(1, False, [0.3, 0.1])]
    metrics, undefined = model_metrics(videos, {v.video_id: np.eye(2) for v in videos}, VeraSettings())
    assert set(metrics.values()) == {None}
    assert "not both normal and anomalous" in undefined["video_auc"]
    assert "0 annotated anomalous frames" in undefined["frame_auc"]


def test_tables_one_row_per_model():
    models = [ModelResult("scorer", [_video(0, True, [0.1, 0.2])],
                          {"video_auc": 0.75, "frame_auc": 0.5, "frame_auc_vera": None,
                           "frame_ap": 0.123456}),
              ModelResult("vlm/focused", [], {"video_auc": 1.0})]
    assert markdown_table(models).splitlines() == [
        "| Model | Videos | Video AUC | Frame AUC | Frame AUC (VERA) | Frame AUC (16-frame) | Frame AP |",
        "|---|---:|---:|---:|---:|---:|---:|",
        "| scorer | 1 | 0.7500 | 0.5000 | n/a | n/a | 0.1235 |",
        "| vlm/focused | 0 | 1.0000 | n/a | n/a | n/a | n/a |",
    ]
    rows = list(csv.DictReader(io.StringIO(csv_table(models))))
    assert rows[0] == {"model": "scorer", "videos": "1", "video_auc": "0.75", "frame_auc": "0.5",
                       "frame_auc_vera": "", "frame_auc_16": "", "frame_ap": "0.123456"}


def _html_cells(table: str) -> list[list[str]]:
    """An ``html_table`` as rows of unescaped cell text."""
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    return [[html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)] for row in rows]


def test_html_markdown_and_csv_tables_hold_the_same_cells():
    models = [ModelResult("a|b <i>", [_video(0, True, [0.1, 0.2])],
                          {"video_auc": np.float64(0.75), "frame_auc": 0.5, "frame_ap": None})]
    table = html_table(models)
    assert table.count("<tr>") == 2 and "<i>" not in table
    assert _html_cells(table) == [
        ["Model", "Videos", "Video AUC", "Frame AUC", "Frame AUC (VERA)", "Frame AUC (16-frame)", "Frame AP"],
        ["a|b <i>", "1", "0.7500", "0.5000", "n/a", "n/a", "n/a"],
    ]
    # a pipe in a name is escaped, so the Markdown row keeps its seven cells
    assert markdown_table(models).splitlines()[2] == "| a\\|b <i> | 1 | 0.7500 | 0.5000 | n/a | n/a | n/a |"
    [row] = csv.DictReader(io.StringIO(csv_table(models)))
    assert row == {"model": "a|b <i>", "videos": "1", "video_auc": "0.75", "frame_auc": "0.5",
                   "frame_auc_vera": "", "frame_auc_16": "", "frame_ap": ""}


def test_html_table_is_the_grid_of_its_rows_exactly():
    models = [ModelResult("a&b", [_video(0, True, [0.1, 0.2])], {"video_auc": 0.75})]
    assert grid(models, COLUMNS[:3]).cells == [["a&b", "1", "0.7500"]]
    assert html_table(models, COLUMNS[:3], cls="x") == (
        '<table class="x"><thead><tr><th data-key="model">Model</th><th class="num" data-key="videos">Videos'
        '</th><th class="num" data-key="video_auc">Video AUC</th></tr></thead><tbody><tr><td>a&amp;b</td>'
        '<td class="num">1</td><td class="num">0.7500</td></tr></tbody></table>')


def test_threshold_rows_count_and_word_the_decisions():
    # video scores 0.9, 0.3 (anomalous), 0.5, 0.2 (normal): at 0.5, v0 and v2 are called anomalous
    videos = [_video(0, True, [0.2, 0.9]), _video(1, True, [0.3, 0.1]), _video(2, False, [0.5, 0.2]),
              _video(3, False, [0.2, 0.1])]
    [row, none] = threshold_rows([ModelResult("m", videos), ModelResult("n", videos[3:])], 0.5)
    assert (row.model, row.videos, row.called, row.precision, row.recall, row.f1) == (
        "m", 4, 2, "0.5000", "0.5000", "0.5000")
    counts = row.counts
    assert (counts.true_positives, counts.false_positives, counts.false_negatives, counts.true_negatives) == (
        1, 1, 1, 1)
    assert (none.called, none.precision, none.recall, none.f1) == (
        0, "undefined (no video called anomalous)", "undefined (no anomalous video)",
        "undefined (no video called or truly anomalous)")


def test_video_rows_give_each_models_score_or_none_and_the_featured_frame_auc():
    first = ModelResult("vlm", [_video(0, True, [0.2, 0.9]), _video(1, False, [0.1, 0.3])])
    second = ModelResult("scorer", [_video(1, False, [0.6, 0.4])])  # v0 not scored: a recorded failure
    rows = video_rows([first, second], first, {"v0": "v0", "v1": "v1"}, {"v0"}, 0.5)
    assert [(r.video_id, r.name, r.label, r.annotated, r.frames, r.scores, r.frame_auc, r.drawn)
            for r in rows] == [
        ("v0", "v0", "Fight", 5, 10, [ScoreCell("0.900", True), None], "1.0000", True),
        ("v1", "v1", "Normal", 0, 10, [ScoreCell("0.300", False), ScoreCell("0.600", True)],
         "undefined (one class)", False)]


def test_table_columns_cover_every_metric_model_metrics_computes():
    videos = [_video(0, True, [0.2, 0.9]), _video(1, False, [0.1, 0.3])]
    metrics, _ = model_metrics(videos, {v.video_id: np.eye(2) for v in videos}, VeraSettings())
    assert [c.key for c in COLUMNS] == ["model", "videos", *metrics]


def _labelled(index: int, label: str, scores: list[float], annotated: int | None = None) -> VideoResult:
    video = _video(index, label != "Normal", scores)
    video.label, video.annotated_frames = label, annotated
    return video


def test_category_metrics_are_over_the_category_and_every_normal_video():
    videos = [_labelled(0, "Fight", [0.2, 0.9]), _labelled(1, "Normal", [0.1, 0.3]),
              _labelled(2, "Arson", [0.6, 0.35]), _labelled(3, "Normal", [0.5, 0.2]),
              _labelled(4, "Fight", [0.3, 0.4])]
    features = {v.video_id: np.eye(2) for v in videos}
    per_category = category_metrics(videos, features, VeraSettings())
    assert list(per_category) == ["Arson", "Fight"]
    for category, indices in {"Arson": [1, 2, 3], "Fight": [0, 1, 3, 4]}.items():
        subset = [videos[i] for i in indices]
        expected, _ = model_metrics(subset, features, VeraSettings())
        assert per_category[category] == expected
        truth = np.concatenate([np.r_[np.zeros(5), np.ones(5)] if v.is_anomalous else np.zeros(10)
                                for v in subset])
        scores = np.concatenate([np.repeat(v.segment_scores, 5) for v in subset])
        assert per_category[category]["frame_auc"] == pytest.approx(roc_auc_score(truth, scores))
        assert per_category[category]["video_auc"] == pytest.approx(
            roc_auc_score([v.is_anomalous for v in subset], [v.video_score for v in subset]))
    # the model's rows of the per-category table: its categories, with their video counts
    model = ModelResult("scorer", videos, categories=per_category)
    assert [(r.category, r.videos, r.anomalous) for r in category_rows([model])] == [("Arson", 3, 1),
                                                                                      ("Fight", 4, 2)]


def test_vera_uses_the_annotated_frame_count_and_mismatches_are_listed():
    videos = [_labelled(0, "Fight", [0.2, 0.9], annotated=40),
              _labelled(1, "Normal", [0.1, 0.3], annotated=10), _labelled(2, "Fight", [0.6, 0.35])]
    assert length_mismatches(videos) == {"v0": (10, 40)}
    assert [v.protocol_frames for v in videos] == [40, 10, 10]
    features = {v.video_id: np.eye(2) for v in videos}
    metrics, _ = model_metrics(videos, features, VeraSettings())
    expected = vera_frame_auc([VeraVideo(v.segment_scores, v.segment_bounds, np.eye(2), n, v.gt_intervals)
                               for v, n in zip(videos, [40, 10, 10], strict=True)], VeraSettings())
    assert metrics["frame_auc_vera"] == pytest.approx(expected, abs=1e-12)


def test_results_markdown_holds_the_model_table_the_category_table_and_the_mismatches():
    videos = [_labelled(0, "Fight", [0.2, 0.9]), _labelled(1, "Normal", [0.1, 0.3])]
    model = ModelResult("scorer", videos, {"video_auc": 1.0},
                        categories={"Fight": {"video_auc": 1.0, "frame_auc": 0.75}})
    text = results_markdown([model], {"v0": (10, 40)})
    tables = [block for block in text.split("\n\n") if block.startswith("|")]
    assert tables[0] == markdown_table([model]).rstrip("\n")
    assert tables[1].splitlines() == [
        "| Model | Category | Videos | Of the category | Video AUC | Frame AUC | Frame AUC (VERA) "
        "| Frame AUC (16-frame) | Frame AP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        "| scorer | Fight | 2 | 1 | 1.0000 | 0.7500 | n/a | n/a | n/a |",
    ]
    assert "- v0: decoded 10, annotated 40" in text
    [row] = csv.DictReader(io.StringIO(csv_table(category_rows([model]), CATEGORY_COLUMNS)))
    assert row == {"model": "scorer", "category": "Fight", "videos": "2", "anomalous": "1",
                   "video_auc": "1.0", "frame_auc": "0.75", "frame_auc_vera": "", "frame_auc_16": "",
                   "frame_ap": ""}
    plain = ModelResult("scorer", videos, {})  # no categories, no mismatches: the model table alone
    assert results_markdown([plain]) == markdown_table([plain])


def test_a_row_with_its_own_threshold_is_decided_at_it():
    """The verdict's row carries its fitted threshold; the other rows use the serving one."""
    def video(video_id: str, label: str, score: float) -> VideoResult:
        scores = np.array([score], np.float32)
        return VideoResult(video_id, label, 4, 4.0, [], np.array([[0, 4]]), scores, score)

    videos = [video("a", "Fight", 0.8), video("b", "Normal", 0.6), video("c", "Normal", 0.2)]
    rows = threshold_rows([ModelResult("scorer", videos), ModelResult("verdict", videos, threshold=0.7)], 0.5)
    assert [(row.model, row.called) for row in rows] == [("scorer", 2), ("verdict", 1)]
    cells = video_rows([ModelResult("verdict", videos, threshold=0.7)], ModelResult("verdict", videos),
                       {"a": "a", "b": "b", "c": "c"}, set(), 0.5)
    assert [row.scores[0].called for row in cells] == [True, False, False]
