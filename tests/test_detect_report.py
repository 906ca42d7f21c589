"""``dualvad detect --report``'s page from records as ``detect_videos`` writes them (no model here; the
end-to-end run is in test_detector.py)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from PIL import Image

from dualvad.batch_detect import write_detect_report

from browser import parse


def _record(path: str, anomalous: bool, score: float, explanation: str) -> dict:
    """A 4 s video (40 frames at 10 fps) in two segments, two sampled frames and one clip."""
    return {"video_path": path, "is_anomalous": anomalous, "video_score": score, "scorer_score": 0.8,
            "vlm_score": 0.8, "category": "Fight<ing>" if anomalous else None,
            "video": {"frames": 40, "fps": 10.0},
            "segments": [{"start_frame": 0, "end_frame": 20, "scorer_score": 0.2, "vlm_score": 0.5,
                          "score": 0.3},
                         {"start_frame": 20, "end_frame": 40, "scorer_score": 0.8, "vlm_score": 0.5,
                          "score": score}],
            "frames": [{"index": 5, "p_yes": 0.1}, {"index": 25, "p_yes": 0.9}],
            "clips": [{"start_s": 2.0, "end_s": 4.0, "score": 8.0, "explanation": explanation}]}


def test_the_page_lists_verdicts_draws_timelines_and_escapes_text(tmp_path: Path):
    records = [_record("in/a b.mp4", True, 0.8, "a <b>fight</b> & 'x'"), _record("in/c.mp4", False, 0.2, ""),
               {"video_path": "in/bad.txt", "error": "not a video: <bad>"}]
    path = write_detect_report(tmp_path / "pages" / "report.html", records,
                               {"run": "/runs/<r>", "vlm": "/models/tiny"}, 0.5)
    page = path.read_text()
    assert "<title>dualvad detect: 3 videos, 1 anomalous</title>" in page
    assert "<p>run /runs/&lt;r&gt; &middot; VLM /models/tiny &middot; anomalous when the video score is at " \
           "least 0.5</p>" in page
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert rows == [
        "<th>video</th><th>verdict</th><th>video score</th><th>category</th>",
        '<td><a href="#video-in_a_b.mp4">in/a b.mp4</a></td><td><span class="anomalous">anomalous</span></td>'
        '<td class="num">0.800</td><td>Fight&lt;ing&gt;</td>',
        '<td><a href="#video-in_c.mp4">in/c.mp4</a></td><td>normal</td><td class="num">0.200</td><td></td>',
        '<td><a href="#video-in_bad.txt">in/bad.txt</a></td><td class="error" colspan="3">not scored</td>']
    timelines = [img for img in parse(page).images if img.get("class") == "timeline"]
    assert [(img["id"], img["alt"]) for img in timelines] == [
        ("timeline-in_a_b.mp4", "score timeline of in/a b.mp4"),
        ("timeline-in_c.mp4", "score timeline of in/c.mp4")]
    for img in timelines:
        data = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))
        assert Image.open(io.BytesIO(data)).size == (1000, 280)
    # the highest clip's explanation where it has one; the failed video's error
    assert ('<p>highest clip, 2.00 to 4.00 s, score 8.0/10:</p>'
            '<div class="explanation">a &lt;b&gt;fight&lt;/b&gt; &amp; &#39;x&#39;</div>') in page
    assert page.count('<div class="explanation">') == 1
    assert '<p class="error">not a video: &lt;bad&gt;</p>' in page
    assert page.count('<article class="video"') == 3 and "<script" not in page
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
