"""The evaluation report: files, embedded images, escaping, one-class models, the metrics table (built
from the metrics, shown once), the per-category table, the parts that explain the page (header, metric
guide with chance levels, the flagged model row, decisions at the serving threshold, every test video
listed, explanations or why there is none), and the page as a real browser (headless Chromium) renders
it."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualvad.eval.metrics import ThresholdCounts
from dualvad.eval.plots import timeline_png
from dualvad.eval.report import RunInfo, metric_guide, scorer_validation, threshold_counts, write_report
from dualvad.eval.results import ModelInfo, ModelResult, Thumbnail, VideoResult
from dualvad.eval.tables import video_frame_auc

from browser import CHROMIUM, MISSING, parse, render

FPS = 10.0
FRAMES = 40
BOUNDS = np.array([[0, 10], [10, 20], [20, 30], [30, 40]], dtype=np.int64)
EXPLOIT = "Frame 3 shows <script>alert('x')</script> & a fight"
# the fixture's video scores: normal 0.2, 0.2, 0.3; anomalous 0.7, 0.8, 0.9. At 0.75 two of the three
# anomalous videos are called anomalous and no normal one.
THRESHOLD = 0.75
INFO = RunInfo(run="/runs/<demo>", corpus="/corpora/synthetic", split="test",
               sampling="focused, budget 6 frames per video, tau 0.1", date="2026-12-04T19:00:00+00:00",
               config_hash="0123456789ab", scorer_validation=scorer_validation(
                   {"epoch": 7, "val_loss": 0.25, "val_auc": None, "val_videos": 3, "val_anomalous": 0,
                    "val_held_out": True}))
RANDOM_NOTE = "random weights (tiny preset, not InternVL3-2B): chance-level by construction"
VLM_INFO = ModelInfo(weights="/models/tiny, on focused frames",
                     video_score="highest clip score / 10, in [0, 1]",
                     frame_score='P("Yes") per sampled frame, in [0, 1]', warning=RANDOM_NOTE,
                     no_explanation="the answer about its best clip was empty")


def _jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (shade, 255 - shade, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _video(i: int, anomalous: bool, scores: list[float], sampled: bool) -> VideoResult:
    """A 4 s video (40 frames at 10 fps, 4 segments); anomalous ones are annotated at [10, 25)."""
    video = VideoResult(
        video_id=f"cam/{'fight' if anomalous else 'street'}_{i}.mp4",
        label="Fighting" if anomalous else "Normal", num_frames=FRAMES, fps=FPS,
        gt_intervals=[(10, 25)] if anomalous else [], segment_bounds=BOUNDS,
        segment_scores=np.array(scores, dtype=np.float32), video_score=float(max(scores)))
    if sampled:
        frames = np.array([5, 12, 15, 18, 22, 35], dtype=np.int64)
        video.sampled_frames = frames
        video.sampled_scores = np.asarray(scores, dtype=np.float32)[frames // 10]
        top = zip(frames[:3], video.sampled_scores[:3], strict=True)
        video.thumbnails = [Thumbnail(int(f), float(s), _jpeg(40 * k)) for k, (f, s) in enumerate(top)]
        video.explanation = {0: EXPLOIT, 1: "video 1: nothing unusual"}.get(i, "")  # video 2: no text
    return video


def _model(name: str, sampled: bool, offset: float = 0.0, info: ModelInfo | None = None) -> ModelResult:
    """Three normal videos then three anomalous ones (so ordering in the report is visible)."""
    normal = [_video(i, False, [0.1 + offset, 0.2, 0.15, 0.1 + 0.1 * i], sampled) for i in range(3)]
    anomalous = [_video(i, True, [0.2, 0.7 + 0.1 * i, 0.6 - offset, 0.3], sampled) for i in range(3)]
    return ModelResult(name, normal + anomalous, {"video_auc": 1.0, "frame_auc": 0.87, "frame_ap": None},
                       categories={"Fighting": {"video_auc": 1.0, "frame_auc": 0.8125,
                                                "frame_auc_vera": 0.7}}, info=info or ModelInfo())


def _one_class() -> ModelResult:
    """Normal videos only: neither ROC is defined."""
    return ModelResult("normal-only", _model("x", False).videos[:3], {"video_auc": None})


def _embedded(img: dict[str, str]) -> bytes:
    prefix, _, payload = img["src"].partition(",")
    assert prefix in ("data:image/png;base64", "data:image/jpeg;base64"), prefix
    return base64.b64decode(payload, validate=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    # the scorer comes first but has no sampled frames: the VLM model is the one the timelines feature
    models = [_model("scorer", sampled=False, offset=0.05),
              _model("vlm/focused", sampled=True, info=VLM_INFO), _one_class()]
    return write_report(tmp_path_factory.mktemp("report"), models, title="Test <report>", timeline_videos=4,
                        threshold=THRESHOLD, info=INFO)


def test_writes_valid_pngs_of_sensible_size(report):
    out = report.parent
    assert report.name == "report.html"
    for name in ("roc_video.png", "roc_frame.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size == (500, 500)
    timelines = sorted(out.glob("timeline_*.png"))
    assert [p.name for p in timelines] == sorted(
        ["timeline_cam_fight_0.mp4.png", "timeline_cam_fight_1.mp4.png", "timeline_cam_fight_2.mp4.png",
         "timeline_cam_street_0.mp4.png"])
    for path in timelines:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (1000, 280)
            assert np.asarray(image.convert("L")).std() > 1  # something is drawn


def test_html_embeds_the_roc_plots_and_timelines(report):
    page = parse(report.read_text())
    by_id = {img.get("id"): img for img in page.images}
    for level in ("video", "frame"):
        img = by_id[f"roc-{level}"]
        assert img["alt"]
        assert _embedded(img) == (report.parent / f"roc_{level}.png").read_bytes()
    timelines = [img for img in page.images if img.get("class") == "timeline"]
    assert len(timelines) == 4
    # anomalous videos first, then normal ones, each group in the given order
    assert [img["id"] for img in timelines] == ["timeline-cam_fight_0.mp4", "timeline-cam_fight_1.mp4",
                                                 "timeline-cam_fight_2.mp4", "timeline-cam_street_0.mp4"]
    assert _embedded(timelines[0]) == (report.parent / "timeline_cam_fight_0.mp4.png").read_bytes()
    assert "Videos, as scored by vlm/focused" in "".join(page.text)


def test_html_shows_thumbnails_top_score_first_with_frame_time_and_score(report):
    page = report.read_text()
    thumbs = [img for img in parse(page).images if img.get("class") == "thumbnail"]
    assert len(thumbs) == 4 * 3
    with Image.open(io.BytesIO(_embedded(thumbs[0]))) as image:
        assert image.format == "JPEG" and image.size == (32, 24)
    # fight_0's sampled scores: frame 5 -> 0.2, frames 12 and 15 -> 0.7; highest first, stable
    assert [t["alt"] for t in thumbs[:3]] == ["frame 12", "frame 15", "frame 5"]
    assert "frame 12 &middot; 1.20 s &middot; score 0.700" in page


def test_html_escapes_the_explanation_and_title(report):
    page = report.read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; a fight" in page
    assert "<title>Test &lt;report&gt;</title>" in page
    assert EXPLOIT in "".join(parse(page).text)  # and reads back as the model wrote it


def test_one_class_model_is_noted_not_plotted(report):
    text = "".join(parse(report.read_text()).text)
    assert "normal-only: no video-level ROC" in text
    assert "normal-only: no frame-level ROC" in text
    assert "scorer: no" not in text and "vlm/focused: no" not in text


class _Tables(HTMLParser):
    """Every ``<table>`` of a page as a list of rows, each row its cells' text; ``classes`` each table's
    class attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.classes: list[str | None] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
            self.classes.append(dict(attrs).get("class"))
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _table(page: str, cls: str) -> list[list[str]]:
    """The page's one table of class ``cls``."""
    parser = _Tables()
    parser.feed(page)
    [table] = [t for t, c in zip(parser.tables, parser.classes, strict=True) if c == cls]
    return table


def test_metrics_table_shows_none_and_missing_metrics_as_na(report):
    table = _table(report.read_text(), "metrics")
    assert table[0] == ["Model", "Videos", "Video AUC", "Frame AUC", "Frame AUC (VERA)",
                        "Frame AUC (16-frame)", "Frame AP", "Note"]
    # the VLM row is flagged: its weights are a random preset's
    assert table[1:] == [["scorer", "6", "1.0000", "0.8700", "n/a", "n/a", "n/a", ""],
                         ["vlm/focused", "6", "1.0000", "0.8700", "n/a", "n/a", "n/a", RANDOM_NOTE],
                         ["normal-only", "3", "n/a", "n/a", "n/a", "n/a", "n/a", ""]]


def test_metrics_table_is_built_from_the_metrics_and_shown_once(tmp_path):
    # distinct values: each can be counted on the page, and no Markdown holding them is passed in
    values = {"scorer": (0.8123, 0.7456, 0.6789, 0.5012), "vlm/<focused>": (0.9321, 0.8654, None, 0.4987)}
    keys = ("video_auc", "frame_auc", "frame_auc_vera", "frame_ap")
    models = [ModelResult(name, _model(name, sampled=name != "scorer").videos,
                          dict(zip(keys, row, strict=True))) for name, row in values.items()]
    page = write_report(tmp_path, models, timeline_videos=1, threshold=THRESHOLD).read_text()
    # no categories here: the category section says so, and the metrics table is there once
    assert page.count('<table class="metrics">') == 1 and '<table class="categories">' not in page
    table = _table(page, "metrics")
    assert [row[0] for row in table[1:]] == ["scorer", "vlm/<focused>"]
    assert "<td>vlm/&lt;focused&gt;</td>" in page
    for row in values.values():
        for value in row:
            if value is not None:
                assert page.count(f">{value:.4f}<") == 1, value


def test_category_table_lists_each_models_categories(report):
    page = report.read_text()
    assert page.count('<table class="categories">') == 1
    categories = _table(page, "categories")
    assert categories[0] == ["Model", "Category", "Videos", "Of the category", "Video AUC", "Frame AUC",
                             "Frame AUC (VERA)", "Frame AUC (16-frame)", "Frame AP"]
    # the normal-only model has no category: two rows, each over 3 fighting + 3 normal videos
    assert categories[1:] == [[name, "Fighting", "6", "3", "1.0000", "0.8125", "0.7000", "n/a", "n/a"]
                              for name in ("scorer", "vlm/focused")]


def test_report_with_only_one_class_models_still_writes_every_file(tmp_path):
    path = write_report(tmp_path, [_one_class()], timeline_videos=2, threshold=THRESHOLD)
    page = path.read_text()
    timelines = ["timeline_cam_street_0.mp4.png", "timeline_cam_street_1.mp4.png"]
    for name in ["roc_video.png", "roc_frame.png", *timelines]:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
    assert 'id="roc-video"' in page and "normal-only: no frame-level ROC" in page


def test_report_is_deterministic(tmp_path):
    models = [_model("vlm", sampled=True)]
    first = write_report(tmp_path / "a", models, timeline_videos=1, threshold=THRESHOLD, info=INFO).parent
    second = write_report(tmp_path / "b", models, timeline_videos=1, threshold=THRESHOLD, info=INFO).parent
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_no_models_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one ModelResult"):
        write_report(tmp_path, [], threshold=THRESHOLD)


def test_timeline_marks_sampled_frames():
    video = _video(0, True, [0.2, 0.7, 0.6, 0.3], sampled=True)
    bare = replace(video, sampled_frames=np.zeros(0, np.int64), sampled_scores=np.zeros(0, np.float32))
    assert timeline_png(video, "vlm") != timeline_png(bare, "vlm")


# ------------------------------------------------------------------------ the page explains itself


def test_header_names_the_run_the_models_and_the_threshold(report):
    page = report.read_text()
    header = _table(page, "header")
    assert header == [
        ["Run", "/runs/<demo>"], ["Corpus", "/corpora/synthetic"], ["Split", "test: 6 videos, 3 anomalous"],
        ["Sampling", "focused, budget 6 frames per video, tau 0.1"],
        ["Serving threshold", "0.75: a video is called anomalous when its video score is at or above it (the "
                              "online detector decides with the run's verdict, the verdict row)"],
        ["Date", "2026-12-04T19:00:00+00:00"], ["Config hash", "0123456789ab"],
        ["Scorer validation", "video AUC undefined (one class) over 3 held-out training videos, 0 "
                              "anomalous: 0 anomalous-normal pair(s); chosen checkpoint: epoch 7, validation "
                              "loss 0.2500"]]
    assert "/runs/&lt;demo&gt;" in page
    models = _table(page, "models")
    assert models[0] == ["Model", "Weights", "Video score", "Frame score", "Note"]
    assert models[2] == ["vlm/focused", VLM_INFO.weights, VLM_INFO.video_score, VLM_INFO.frame_score,
                         RANDOM_NOTE]
    assert models[1] == ["scorer", "not stated", "not stated", "not stated", ""]


def test_page_without_run_information_says_so(tmp_path):
    page = write_report(tmp_path, [_model("vlm", sampled=True)], timeline_videos=1, threshold=0.5).read_text()
    assert _table(page, "header") == [
        ["Run", "not given: this page was written without run information"],
        ["Test videos", "6 videos, 3 anomalous"], ["Serving threshold", "0.5"]]


def test_scorer_validation_says_what_its_auc_is_over_and_undefined_when_one_class():
    checkpoint = {"epoch": 3, "val_loss": 0.5}
    # one anomalous and one normal video: a single pair, so the AUC can only be 0, 0.5 or 1
    assert scorer_validation({**checkpoint, "val_auc": 0.0, "val_videos": 2, "val_anomalous": 1,
                              "val_held_out": True}) == (
        "video AUC 0.0000 over 2 held-out training videos, 1 anomalous: 1 anomalous-normal pair(s); chosen "
        "checkpoint: epoch 3, validation loss 0.5000")
    assert scorer_validation({**checkpoint, "val_auc": 0.8125, "val_videos": 8, "val_anomalous": 4,
                              "val_held_out": False}) == (
        "video AUC 0.8125 over 8 training videos themselves (too few to hold out both classes), 4 anomalous: "
        "16 anomalous-normal pair(s); chosen checkpoint: epoch 3, validation loss 0.5000")
    assert scorer_validation({**checkpoint, "val_auc": None}) == (
        "video AUC undefined (one class) (the validation videos are not recorded); chosen checkpoint: "
        "epoch 3, validation loss 0.5000")
    assert scorer_validation(None) == "not recorded (no RUN/scorer/metrics.json)"


def test_metric_guide_gives_each_metric_its_chance_level():
    # 3 anomalous videos of 6, each annotated on frames [10, 25) of 40: 45 of 240 frames anomalous
    guide = dict(metric_guide([_model("vlm", sampled=True)], THRESHOLD))
    assert list(guide) == ["Video AUC", "Frame AUC", "Frame AUC (VERA)", "Frame AP", "Precision", "Recall",
                           "F1"]
    assert all("Chance level 0.5" in guide[name] for name in ("Video AUC", "Frame AUC", "Frame AUC (VERA)"))
    assert guide["Frame AP"].endswith(
        "Chance level: the share of anomalous frames, 0.1875 on these test videos.")
    assert guide["Precision"].startswith("Of the videos called anomalous (video score at or above 0.75, ")
    assert guide["Precision"].endswith("the share of anomalous test videos, 0.5000.")
    assert guide["F1"].endswith("gives 0.6667 here (precision 0.5000, recall 1).")


def test_guide_is_on_the_page(report):
    text = " ".join(parse(report.read_text()).text)
    assert "What the metrics measure" in text
    assert "the share of anomalous frames, 0.1875 on these test videos" in text


def test_threshold_view_counts_the_decisions_exactly(report):
    # video scores: normal 0.2, 0.2, 0.3; anomalous 0.7, 0.8, 0.9; called anomalous at >= 0.75: 0.8 and 0.9
    assert threshold_counts(_model("vlm", sampled=True), THRESHOLD) == ThresholdCounts(
        0.75, true_positives=2, false_positives=0, false_negatives=1, true_negatives=3, precision=1.0,
        recall=2 / 3, f1=0.8)
    page = report.read_text()
    assert _table(page, "threshold") == [
        ["Model", "Called anomalous", "Precision", "Recall", "F1"],
        ["scorer", "2 of 6", "1.0000", "0.6667", "0.8000"],
        ["vlm/focused", "2 of 6", "1.0000", "0.6667", "0.8000"],
        ["normal-only", "0 of 3", "undefined (no video called anomalous)", "undefined (no anomalous video)",
         "undefined (no video called or truly anomalous)"]]
    confusion = [t for t, c in zip(*_parsed(page), strict=True) if c == "confusion"]
    assert confusion[1] == [["truth", "called anomalous", "called normal"], ["anomalous", "2", "1"],
                            ["normal", "0", "3"]]
    assert confusion[2][1:] == [["anomalous", "0", "0"], ["normal", "0", "3"]]


def _parsed(page: str) -> tuple[list[list[list[str]]], list[str | None]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables, parser.classes


def test_every_test_video_is_listed_with_its_timeline_or_why_not(report):
    page = report.read_text()
    table = _table(page, "videos")
    assert table[0] == ["Video", "Label", "Annotated frames", "scorer video score", "vlm/focused video score",
                        "normal-only video score", "vlm/focused frame AUC", "Timeline"]
    not_drawn = "none drawn"
    # fight_0: frames [10, 20) at 0.7 and [20, 25) at 0.6 against normal frames at 0.2, 0.3 and 0.6
    # ([25, 30)): (10 * 25 + 5 * 20 + 0.5 * 5 * 5) / (15 * 25) = 0.9667
    assert table[1:] == [
        ["cam/street_0.mp4", "Normal", "0 of 40", "0.200", "0.200", "0.200", "undefined (one class)",
         "timeline"],
        ["cam/street_1.mp4", "Normal", "0 of 40", "0.200", "0.200", "0.200", "undefined (one class)",
         not_drawn],
        ["cam/street_2.mp4", "Normal", "0 of 40", "0.300", "0.300", "0.300", "undefined (one class)",
         not_drawn],
        ["cam/fight_0.mp4", "Fighting", "15 of 40", "0.700", "0.700", "not scored (a recorded failure)",
         "0.9667", "timeline"],
        ["cam/fight_1.mp4", "Fighting", "15 of 40", "0.800", "0.800", "not scored (a recorded failure)",
         "0.9667", "timeline"],
        ["cam/fight_2.mp4", "Fighting", "15 of 40", "0.900", "0.900", "not scored (a recorded failure)",
         "0.9667", "timeline"]]
    assert video_frame_auc(_model("vlm", sampled=True).videos[3]) == pytest.approx(362.5 / 375, abs=1e-12)
    links = re.findall(r'<a href="#(video-[^"]+)">timeline</a>', page)
    assert links == ["video-cam_street_0.mp4", "video-cam_fight_0.mp4", "video-cam_fight_1.mp4",
                     "video-cam_fight_2.mp4"]
    for anchor in links:  # each link lands on a drawn video's section
        assert page.count(f'id="{anchor}"') == 1
    # scores at or above the threshold are bold (class "called"): 0.8 and 0.9 of both models
    assert page.count('<td class="num called">') == 4


def test_explanation_is_shown_or_none_with_the_reason(report):
    page = report.read_text()
    # drawn: fight_0, fight_1, fight_2 and street_0; fight_2 has no text
    assert page.count('<div class="explanation">') == 3
    assert ('<p class="no-explanation">explanation: none (the answer about its best clip was empty)</p>'
            in page)
    # and the scores of each drawn video on their stated scale
    assert "video score: <b>0.900</b> (highest clip score / 10, in [0, 1])" in page


# ------------------------------------------------------------------------------------ browser

@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_chromium_renders_the_report_explaining_itself(report, tmp_path):
    """What a reader sees once Chromium has parsed the page: the plots, the tables, the header, the chance
    levels, the flagged VLM row, the decisions at the threshold, all six videos, the explanation or why
    there is none."""
    dom = render(report, tmp_path / "profile", tmp_path / "shot.png")
    ids = {img.get("id") for img in dom.images}
    assert {"roc-video", "roc-frame"} <= ids
    assert any(img.get("class") == "timeline" for img in dom.images)
    assert "Frame AUC (VERA)" in dom.text and "vlm/focused" in dom.text
    assert "Per anomaly category" in dom.text and "Fighting" in dom.text
    text = " ".join(" ".join(dom.text).split())
    for shown in ("Config hash 0123456789ab", "Date 2026-12-04T19:00:00+00:00", "Run /runs/<demo>",
                  "video AUC undefined (one class)", "What the metrics measure",
                  "the share of anomalous frames, 0.1875 on these test videos", RANDOM_NOTE,
                  "Decisions at the serving threshold 0.75", "vlm/focused 2 of 6 1.0000 0.6667 0.8000",
                  "All test videos (6)", "cam/street_2.mp4 Normal 0 of 40 0.300",
                  "Timelines are drawn for 4 of 6 videos (eval.timeline_videos = 4), anomalous ones first.",
                  "cam/street_1.mp4 Normal 0 of 40 0.200 0.200 0.200 undefined (one class) none drawn",
                  "explanation: none (the answer about its best clip was empty)",
                  "Frame 3 shows <script>alert('x')</script> & a fight"):
        assert shown in text, shown
