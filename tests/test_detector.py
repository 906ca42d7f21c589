"""The online detector against the stages: on a corpus video it gives the segment scores of RUN/scores, the
frames of RUN/samples and the frame scores of RUN/eval/predictions (one detector, offline and online);
unusable files are InvalidVideoError; options are validated."""

from __future__ import annotations

import base64
import copy
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from markupsafe import escape
from PIL import Image
from sklearn.metrics import roc_auc_score

from dualvad import paths
from dualvad import schema as S
from dualvad.batch_detect import detection_results
from dualvad.corpus import SynthSpec, generate_corpus
from dualvad.corpus.layout import VideoRecord
from dualvad.corpus.synthetic import encode_mp4
from dualvad.detection import combine, load_verdict
from dualvad.detector import Detector, FrameJudge, InvalidVideoError, SegmentAnalyzer
from dualvad.detector_schema import DetectOptions
from dualvad.errors import MissingInputError
from dualvad.eval.verdict import Verdict, apply
from dualvad.pipeline.ingest import segment_table
from dualvad.pipeline.sample import sample_videos, segments_with_scores
from dualvad.rundir import open_run
from dualvad.scorer.features import ingested_video_features
from dualvad.video.sampling import DecodeWindow
from dualvad.video.segments import decode_depth, decode_window

from media import write_broken_files, write_video


@pytest.fixture(scope="module")
def detector(evaluated_copy) -> Detector:
    config, run, tiny = evaluated_copy
    return Detector.from_run(run.uri, vlm=str(tiny), batch_size=config.eval.batch_size,
                             max_new_tokens=config.eval.max_new_tokens)


def _predictions(run) -> dict[str, dict]:
    rows = pq.read_table(run.path(paths.EVAL, paths.PREDICTIONS_DIR, "vlm-focused.parquet")).to_pylist()
    return {row[S.VIDEO_ID]: row for row in rows}


def test_a_corpus_video_gets_the_scores_of_the_stages(evaluated_copy, detector):
    _, run, _ = evaluated_copy
    table = segments_with_scores(run).to_pandas()
    predictions = _predictions(run)
    samples = {row[S.VIDEO_ID]: row for row in run.read_table(paths.SAMPLES).to_pylist()}
    video_id = sorted(predictions)[0]
    segments = table[table[S.VIDEO_ID] == video_id].sort_values(S.SEGMENT_INDEX)
    detection = detector.detect(segments[S.VIDEO_PATH].iloc[0])
    analysis, judgement, expected = detection.analysis, detection.judgement, predictions[video_id]
    assert analysis.video_id == video_id  # the corpus id, found from the path: the sampler's seed
    np.testing.assert_array_equal(analysis.bounds, segments[[S.START_FRAME, S.END_FRAME]].to_numpy())
    # RUN/scores scored many videos per forward pass, the detector one: equal to float32 rounding
    np.testing.assert_allclose(analysis.segment_scores, segments[S.SCORE].to_numpy(np.float32),
                               rtol=0, atol=1e-6)
    assert analysis.frames.tolist() == samples[video_id][S.FRAMES] == expected[S.FRAMES]
    np.testing.assert_allclose(judgement.frame_scores, expected[S.FRAME_SCORES], rtol=0, atol=1e-6)
    np.testing.assert_allclose(judgement.clip_scores, expected[S.CLIP_SCORES], rtol=0, atol=1e-5)
    assert judgement.clip_starts == expected[S.CLIP_STARTS]
    best = int(np.argmax(judgement.clip_scores))
    assert judgement.explanations[best] == expected[S.EXPLANATION]
    assert detection.vlm_score == pytest.approx(max(expected[S.CLIP_SCORES]) / 10, abs=1e-6)
    # the run's verdict (RUN/eval/verdict.json; its 2 validation videos are too few to fit: the scorer alone)
    verdict = Verdict.from_dict(json.loads(Path(run.path(paths.EVAL, paths.VERDICT_FILE)).read_text()))
    assert detector.analyzer.verdict == verdict and verdict.source == "scorer-only"
    assert detection.video_score == float(apply(verdict, analysis.segment_scores.max(), detection.vlm_score))
    np.testing.assert_array_equal(detection.segment_scores, apply(verdict, analysis.segment_scores,
                                                                  detection.vlm_score).astype(np.float32))
    assert detection.threshold == verdict.threshold == 0.5
    assert detection.is_anomalous == (detection.video_score >= 0.5)


def test_the_result_is_json_with_every_segment_frame_and_clip(evaluated_copy, detector):
    config, run, _ = evaluated_copy
    path = segments_with_scores(run)[S.VIDEO_PATH][0].as_py()
    detection = detector.detect(path, DetectOptions(explain=False, threshold=0.0))
    result = json.loads(detection.result({"run": run.uri, "vlm": "v"}).model_dump_json())
    k, n = config.ingest.segments, config.sample.budget
    assert len(result["segments"]) == k and len(result["frames"]) == n and len(result["clips"]) == n // 4
    assert result["is_anomalous"] and all(clip["explanation"] == "" for clip in result["clips"])
    assert all(0 <= clip["score"] <= 10 and clip["start_s"] < clip["end_s"] for clip in result["clips"])
    assert [f["index"] for f in result["frames"]] == detection.analysis.frames.tolist()
    assert set(result["timings_ms"]) == {"decode_features", "scorer", "allocation", "frames", "frames_vlm",
                                         "clips_vlm"}
    assert all(jpeg[:2] == b"\xff\xd8" for jpeg in detection.analysis.jpegs)
    # the verdict, the two models' video scores, and the scorer's category whatever the verdict
    assert result["verdict"] == {"source": "scorer-only", "scorer_weight": 1.0, "vlm_weight": 0.0,
                                 "bias": 0.0, "threshold": 0.0, "vlm_used": False,  # the request's threshold
                                 "reason": detector.analyzer.verdict.reason}
    assert result["scorer_score"] == pytest.approx(float(detection.analysis.segment_scores.max()))
    assert result["vlm_score"] == pytest.approx(max(clip["score"] for clip in result["clips"]) / 10)
    assert result["category"] in detector.analyzer.scorer.categories[1:]
    assert 0.0 <= result["category_probability"] <= 1.0
    vlm_segments = [s["vlm_score"] for s in result["segments"]]
    assert vlm_segments == pytest.approx(detection.vlm_segment_scores.tolist())
    info = detector.info()
    assert info["settings"]["image_size"] == 56 and info["settings"]["clip_frames"] == 4
    assert info["settings"]["sample"]["budget"] == n and info["models"]["scorer_kind"] == "refinevad"


def test_anomalous_videos_outside_the_corpus_score_above_normal_ones(evaluated_copy, tmp_path):
    _, run, _ = evaluated_copy
    analyzer = SegmentAnalyzer.from_run(run.uri)
    records = generate_corpus(tmp_path / "new", SynthSpec(videos=8, seconds=3.0, seed=11))
    highest = {True: [], False: []}  # anomalous? -> the scorer's highest segment score of each video
    for record in records:
        analysis = analyzer.analyze(record.path)
        assert analysis.video_id == Path(record.path).name  # outside the corpus: the file name
        assert analysis.category is None or analysis.category in analyzer.scorer.categories[1:]
        highest[record.label != "Normal"].append(float(analysis.segment_scores.max()))
    # Ranking, not a threshold (the scorer of 20 tiny videos is weak: 0.875 when written, chance 0.5).
    truth = np.r_[np.ones(len(highest[True])), np.zeros(len(highest[False]))]
    assert len(highest[True]) == len(highest[False]) == 4
    assert roc_auc_score(truth, highest[True] + highest[False]) > 0.6
    assert np.mean(highest[True]) > np.mean(highest[False])


def test_a_clear_anomaly_is_anomalous_whatever_the_random_vlm_says(evaluated_copy, detector):
    """The anomalous test video the scorer ranks highest, with no threshold asked: the verdict's."""
    _, run, _ = evaluated_copy
    table = segments_with_scores(run).to_pandas().query("split == 'test' and label != 'Normal'")
    best = table.loc[table[S.SCORE].idxmax()]
    assert best[S.SCORE] > 0.7  # the scorer of 20 tiny videos detects it: 0.731 when written
    detection = detector.detect(best[S.VIDEO_PATH], DetectOptions(explain=False))
    result = detection.result({"run": "r", "vlm": "v"})
    assert result.is_anomalous and result.video_score > 0.7 and result.verdict.threshold == 0.5
    # the random tiny VLM alone, as detect decided before the verdict, calls it normal
    assert result.vlm_score < 0.5, result.vlm_score
    assert result.category in detector.analyzer.scorer.categories[1:]


def test_explanations_never_change_a_score(evaluated_copy, detector):
    """With a fitted verdict that uses the VLM, so a changed clip score would show in every score."""
    _, run, _ = evaluated_copy
    analyzer = detector.analyzer
    fitted = Verdict("fitted", 2.0, 1.5, -1.0, 0.4, True, "")
    analysis = SegmentAnalyzer(analyzer.run, analyzer.scorer, analyzer.settings, analyzer.scorer_path,
                               fitted).analyze(segments_with_scores(run)[S.VIDEO_PATH][0].as_py())
    explained = combine(analysis, detector.judge(analysis.jpegs, explain=True))
    plain = combine(analysis, detector.judge(analysis.jpegs, explain=False))
    assert plain.judgement.explanations == ["", ""]
    assert (explained.video_score, explained.vlm_score, explained.is_anomalous) == (
        plain.video_score, plain.vlm_score, plain.is_anomalous)
    assert explained.judgement.clip_scores == plain.judgement.clip_scores
    np.testing.assert_array_equal(explained.segment_scores, plain.segment_scores)
    np.testing.assert_array_equal(explained.vlm_segment_scores, plain.vlm_segment_scores)
    # the fitted verdict's formula, exactly: sigmoid(2 logit(s) + 1.5 logit(v) - 1)
    s, v = float(analysis.segment_scores.max()), explained.vlm_score
    z = 2.0 * np.log(s / (1 - s)) + 1.5 * np.log(v / (1 - v)) - 1.0
    assert explained.video_score == pytest.approx(1 / (1 + np.exp(-z)), rel=1e-12)
    assert explained.is_anomalous == (explained.video_score >= 0.4)


def test_a_run_not_evaluated_is_decided_by_the_scorer_alone(tmp_path):
    verdict = load_verdict(open_run(str(tmp_path)))
    assert (verdict.source, verdict.scorer_weight, verdict.vlm_weight, verdict.bias, verdict.threshold) == (
        "scorer-only", 1.0, 0.0, 0.0, 0.5)
    assert "verdict.json does not exist (run `dualvad evaluate`" in verdict.reason


def test_unusable_files_are_invalid_videos(evaluated_copy, tmp_path):
    _, run, _ = evaluated_copy
    analyzer = SegmentAnalyzer.from_run(run.uri)
    broken = write_broken_files(tmp_path)
    with pytest.raises(InvalidVideoError, match="not a decodable video"):
        analyzer.analyze(str(broken["text"]))
    with pytest.raises(InvalidVideoError, match="truncated"):
        analyzer.analyze(str(broken["truncated"]))
    # 4 frames, K = 8: the fix is a longer video (detect has no --segments)
    with pytest.raises(InvalidVideoError, match="reads 8 segments per video, so send a video of at least 8 "):
        analyzer.analyze(str(write_video(tmp_path / "four.mp4", 4)))
    short = str(write_video(tmp_path / "ten.mp4", 10))
    assert len(analyzer.analyze(short).frames) == 8
    with pytest.raises(InvalidVideoError, match="frame budget 12 is outside 1..10"):
        analyzer.analyze(short, DetectOptions(budget=12))


def test_options_are_validated_and_name_the_valid_values():
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        DetectOptions(budget=0)
    with pytest.raises(ValueError, match="strategy must be one of focused, uniform, random, cdf"):
        DetectOptions(strategy="everything")
    with pytest.raises(ValueError, match="tau must be a number > 0"):
        DetectOptions(tau=0.0)
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        DetectOptions(threshold=1.5)
    with pytest.raises(ValueError, match="explain must be true or false, got 'maybe'"):
        DetectOptions(explain="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget must be an integer >= 1 .*, got True"):
        DetectOptions(budget=True)  # a bool is no frame count, though pydantic would read it as 1
    with pytest.raises(ValueError, match="budget must be .*got 0; tau must be a number > 0"):
        DetectOptions(budget=0, tau=-1.0)  # every bad option named, one line
    assert DetectOptions(budget=4, strategy="uniform", tau=0.5, threshold=1).budget == 4
    # strings parse as an HTTP form sends them
    assert DetectOptions(budget="4", tau="0.5", threshold="1", explain="false") == DetectOptions(
        budget=4, tau=0.5, threshold=1.0, explain=False)


def test_other_options_change_the_sampling(evaluated_copy, detector):
    _, run, _ = evaluated_copy
    path = segments_with_scores(run)[S.VIDEO_PATH][0].as_py()
    analysis = detector.analyze(path, DetectOptions(budget=4, strategy="uniform"))
    assert analysis.strategy == "uniform" and len(analysis.frames) == len(analysis.jpegs) == 4


def _long_gop_video(path: Path) -> str:
    """600 frames (20 s at 30 fps, 64 x 48) of a square gliding over a still background, encoded with
    x264's defaults: keyframes 0, 192 and 416, so most frames lie far more than a second into their GOP."""
    def frames():
        for i in range(600):
            frame = np.full((48, 64, 3), 90, np.uint8)
            frame[20:28, (i // 4) % 56:(i // 4) % 56 + 8] = 230
            yield frame

    encode_mp4(frames(), path, 30, long_gop=True)
    return str(path)


def test_in_a_long_gop_video_the_detector_moves_frames_into_the_decode_windows_as_the_sampler_does(
        evaluated_copy, detector, tmp_path):
    path = _long_gop_video(tmp_path / "long.mp4")
    analyzer = detector.analyzer
    ingest, sample = analyzer.settings.ingest, analyzer.settings.sample
    assert sample.within_decode_window and ingest.decode_window_s == 1.0  # the run sampled with the default
    spread_analyzer = copy.copy(analyzer)
    spread_analyzer.settings = dataclasses.replace(
        analyzer.settings, sample=dataclasses.replace(sample, within_decode_window=False))
    placed, spread = analyzer.analyze(path), spread_analyzer.analyze(path)
    # the sample stage's function on ingest's rows of this video (its recorded keyframes, these scores)
    # takes the detector's frames, so build-benchmarks and evaluate would read them too
    video = ingested_video_features(path, analyzer.extractor, ingest)
    assert video.keyframes.tolist() == [0, 192, 416]
    record = VideoRecord(placed.video_id, path, "Normal", "test", None)
    scores = pa.array(placed.segment_scores, pa.float64())
    table = segment_table(record, video).append_column(S.SCORE, scores)
    for analysis, setting in ((placed, sample), (spread, spread_analyzer.settings.sample)):
        rows, _ = sample_videos(table, setting, DecodeWindow.of(ingest))
        assert rows[0][S.FRAMES] == analysis.frames.tolist()
    # every frame the strategy put deeper than 30 frames into its GOP now lies in its segment's window
    depth = decode_depth(placed.frames, video.keyframes)
    windows = [decode_window(int(s), int(e), video.keyframes, 30) for s, e in video.bounds]
    segment = np.searchsorted(video.bounds[:, 1], placed.frames, side="right")
    assert all(d <= 30 or windows[k][0] <= f < windows[k][1]
               for f, d, k in zip(placed.frames, depth, segment, strict=True))
    assert decode_depth(spread.frames, video.keyframes).max() > 30  # without the setting, deeper frames
    assert placed.frames_decoded < spread.frames_decoded
    assert len(placed.jpegs) == len(spread.jpegs) == sample.budget
    # the moved frames lie on the window anchors the features' walk kept: not decoded again, same pixels
    unkept_analyzer = copy.copy(analyzer)
    unkept_analyzer.keep_window_anchors = lambda reader: None
    unkept = unkept_analyzer.analyze(path)
    assert unkept.frames.tolist() == placed.frames.tolist() and unkept.jpegs == placed.jpegs
    assert placed.frames_decoded < unkept.frames_decoded


def test_a_run_without_a_finetuned_model_names_the_fix(evaluated_copy):
    _, run, _ = evaluated_copy
    with pytest.raises(MissingInputError, match="pass vlm="):
        FrameJudge.from_run(run.uri)


def test_detect_report_is_one_self_contained_page_with_a_timeline_per_video(evaluated_copy, tmp_path, capsys):
    """`dualvad detect --report`: the verdicts of the JSON lines in a table, each scored video's timeline
    (the VLM's segment scores and sampled frames, the scorer's scores) as an inline PNG, a bad file's
    error."""
    from dualvad.cli import main

    _, run, tiny = evaluated_copy
    generate_corpus(tmp_path / "mine", SynthSpec(videos=2, seconds=2.0, seed=21))
    text = write_broken_files(tmp_path)["text"]
    out, report = tmp_path / "detections.jsonl", tmp_path / "pages" / "report.html"
    code = main(["detect", str(tmp_path / "mine" / "videos"), str(text), "--run", run.uri, "--vlm", str(tiny),
                 "--out", str(out), "--report", str(report), "eval.max_new_tokens=4"])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and [("error" in line) for line in lines] == [False, False, True]
    assert f", report {report}" in capsys.readouterr().err
    page = report.read_text()
    # the page's escaping is the templates' (markupsafe's)
    assert "<script" not in page and "http" not in page.replace(escape(run.uri), "")
    assert page.count('<article class="video"') == 3 and escape(lines[2]["error"]) in page
    timelines = re.findall(r'<img id="timeline-[^"]+" class="timeline" alt="score timeline of ([^"]+)" '
                           r'src="data:image/png;base64,([^"]+)">', page)
    assert [path for path, _ in timelines] == [line["video_path"] for line in lines[:2]]
    for line, (_, data) in zip(lines[:2], timelines, strict=True):
        assert Image.open(io.BytesIO(base64.b64decode(data))).size == (1000, 280)
        verdict = "anomalous</span>" if line["is_anomalous"] else "normal"
        assert f'{verdict}</td><td class="num">{line["video_score"]:.3f}</td>' in page
        vlm, scorer, verdict = detection_results(line)  # what the timeline draws
        assert vlm.sampled_frames.tolist() == [frame["index"] for frame in line["frames"]]
        np.testing.assert_allclose(vlm.sampled_scores, [f["p_yes"] for f in line["frames"]], rtol=1e-6)
        np.testing.assert_allclose(vlm.segment_scores, [s["vlm_score"] for s in line["segments"]], rtol=1e-6)
        np.testing.assert_allclose(verdict.segment_scores, [s["score"] for s in line["segments"]], rtol=1e-6)
        assert (vlm.video_score, verdict.video_score) == (line["vlm_score"], line["video_score"])
        np.testing.assert_allclose(scorer.segment_scores, [s["scorer_score"] for s in line["segments"]],
                                   rtol=1e-6)
        assert (vlm.label, vlm.is_anomalous, vlm.num_frames) == ("unlabelled", False, line["video"]["frames"])
