"""The evaluation report: files, embedded images, escaping, one-class models, the metrics table (built
from the metrics, shown once), the per-category table, and the page as a real browser (headless Chromium)
renders it."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualvad.eval.report import safe_names, timeline_png, write_report
from dualvad.eval.results import ModelResult, Thumbnail, VideoResult

from browser import CHROMIUM, MISSING, parse, render

FPS = 10.0
FRAMES = 40
BOUNDS = np.array([[0, 10], [10, 20], [20, 30], [30, 40]], dtype=np.int64)
EXPLOIT = "Frame 3 shows <script>alert('x')</script> & a fight"


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
        video.explanation = EXPLOIT if i == 0 else f"video {i}: nothing unusual"
    return video


def _model(name: str, sampled: bool, offset: float = 0.0) -> ModelResult:
    """Three normal videos then three anomalous ones (so ordering in the report is visible)."""
    normal = [_video(i, False, [0.1 + offset, 0.2, 0.15, 0.1 + 0.1 * i], sampled) for i in range(3)]
    anomalous = [_video(i, True, [0.2, 0.7 + 0.1 * i, 0.6 - offset, 0.3], sampled) for i in range(3)]
    return ModelResult(name, normal + anomalous, {"video_auc": 1.0, "frame_auc": 0.87, "frame_ap": None},
                       categories={"Fighting": {"video_auc": 1.0, "frame_auc": 0.8125,
                                                "frame_auc_vera": 0.7}})


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
    models = [_model("scorer", sampled=False, offset=0.05), _model("vlm/focused", sampled=True), _one_class()]
    return write_report(tmp_path_factory.mktemp("report"), models, title="Test <report>", timeline_videos=4)


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
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; a fight" in page
    assert "<title>Test &lt;report&gt;</title>" in page
    assert EXPLOIT in "".join(parse(page).text)  # and reads back as the model wrote it


def test_one_class_model_is_noted_not_plotted(report):
    text = "".join(parse(report.read_text()).text)
    assert "normal-only: no video-level ROC" in text
    assert "normal-only: no frame-level ROC" in text
    assert "scorer: no" not in text and "vlm/focused: no" not in text


class _Tables(HTMLParser):
    """Every ``<table>`` of a page as a list of rows, each row its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
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


def _tables(page: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def test_metrics_table_shows_none_and_missing_metrics_as_na(report):
    table, _ = _tables(report.read_text())
    assert table[0] == ["Model", "Videos", "Video AUC", "Frame AUC", "Frame AUC (VERA)", "Frame AP"]
    assert table[1:] == [["scorer", "6", "1.0000", "0.8700", "n/a", "n/a"],
                         ["vlm/focused", "6", "1.0000", "0.8700", "n/a", "n/a"],
                         ["normal-only", "3", "n/a", "n/a", "n/a", "n/a"]]


def test_metrics_table_is_built_from_the_metrics_and_shown_once(tmp_path):
    # distinct values: each can be counted on the page, and no Markdown holding them is passed in
    values = {"scorer": (0.8123, 0.7456, 0.6789, 0.5012), "vlm/<focused>": (0.9321, 0.8654, None, 0.4987)}
    keys = ("video_auc", "frame_auc", "frame_auc_vera", "frame_ap")
    models = [ModelResult(name, _model(name, sampled=name != "scorer").videos,
                          dict(zip(keys, row, strict=True))) for name, row in values.items()]
    page = write_report(tmp_path, models, timeline_videos=1).read_text()
    # no categories here: the metrics table is the page's only table (the category section says so)
    assert page.count("<table") == page.count('<table class="metrics">') == 1
    [table] = _tables(page)
    assert [row[0] for row in table[1:]] == ["scorer", "vlm/<focused>"]
    assert "<td>vlm/&lt;focused&gt;</td>" in page
    for row in values.values():
        for value in row:
            if value is not None:
                assert page.count(f">{value:.4f}<") == 1, value


def test_category_table_lists_each_models_categories(report):
    page = report.read_text()
    assert page.count('<table class="categories">') == 1
    _, categories = _tables(page)
    assert categories[0] == ["Model", "Category", "Videos", "Of the category", "Video AUC", "Frame AUC",
                             "Frame AUC (VERA)", "Frame AP"]
    # the normal-only model has no category: two rows, each over 3 fighting + 3 normal videos
    assert categories[1:] == [[name, "Fighting", "6", "3", "1.0000", "0.8125", "0.7000", "n/a"]
                              for name in ("scorer", "vlm/focused")]


def test_report_with_only_one_class_models_still_writes_every_file(tmp_path):
    path = write_report(tmp_path, [_one_class()], timeline_videos=2)
    page = path.read_text()
    timelines = ["timeline_cam_street_0.mp4.png", "timeline_cam_street_1.mp4.png"]
    for name in ["roc_video.png", "roc_frame.png", *timelines]:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
    assert 'id="roc-video"' in page and "normal-only: no frame-level ROC" in page


def test_report_is_deterministic(tmp_path):
    models = [_model("vlm", sampled=True)]
    first = write_report(tmp_path / "a", models, timeline_videos=1).parent
    second = write_report(tmp_path / "b", models, timeline_videos=1).parent
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_no_models_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one ModelResult"):
        write_report(tmp_path, [])


def test_timeline_marks_sampled_frames():
    video = _video(0, True, [0.2, 0.7, 0.6, 0.3], sampled=True)
    bare = replace(video, sampled_frames=np.zeros(0, np.int64), sampled_scores=np.zeros(0, np.float32))
    assert timeline_png(video, "vlm") != timeline_png(bare, "vlm")


def test_safe_names_are_unique_file_stems():
    assert safe_names(["a/b.mp4", "a_b.mp4", "../x y", "///"]) == ["a_b.mp4", "a_b.mp4_2", "x_y", "video"]


# ------------------------------------------------------------------------------------ browser

@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_chromium_renders_the_report(report, tmp_path):
    dom = render(report, tmp_path / "profile", tmp_path / "shot.png")
    ids = {img.get("id") for img in dom.images}
    assert {"roc-video", "roc-frame"} <= ids
    assert any(img.get("class") == "timeline" for img in dom.images)
    assert "Frame AUC (VERA)" in dom.text and "vlm/focused" in dom.text
    assert "Per anomaly category" in dom.text and "Fighting" in dom.text
