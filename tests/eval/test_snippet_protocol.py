"""The field's 16-frame frame-AUC protocol: by hand on small arrays, and against a transcription of the
reference's procedure (VadCLIP ``list/make_gt_ucf.py``, commit 8f554d1, as its steps read; with UR-DMU's
``ucf_test.py`` way of scoring: snippet scores repeated 16 times, ``roc_curve`` then ``auc``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc, roc_curve

from dualvad.corpus.annotations import read_ucf_temporal
from dualvad.eval.snippet_protocol import (
    SnippetVideo,
    read_ground_truth,
    snippet_curves,
    snippet_frame_auc,
    snippet_frame_scores,
    snippet_ground_truth,
    snippets_of,
    write_ground_truth,
)


def test_one_video_by_hand():
    bounds = np.array([[0, 20], [20, 45]])
    # snippets start at frames 0, 16, 32: segments 0, 0, 1
    scores = snippet_frame_scores(np.array([0.1, 0.9]), bounds, 3)
    assert scores.tolist() == pytest.approx([0.1] * 32 + [0.9] * 16)
    truth = snippet_ground_truth(3, [(10, 30), (40, 60)])  # the second runs past 16 T = 48: cut there
    assert truth.dtype == np.float32
    assert np.flatnonzero(truth).tolist() == [*range(10, 30), *range(40, 48)]


def test_snippet_segments_take_their_own_score():
    bounds = np.array([[0, 16], [16, 32], [32, 40]])  # one segment per snippet, the last one short
    assert snippet_frame_scores(np.array([0.2, 0.4, 0.8]), bounds, 3).tolist() == pytest.approx(
        [0.2] * 16 + [0.4] * 16 + [0.8] * 16)


def test_the_two_length_conventions_differ_by_a_snippet_where_16_divides_the_frames():
    assert [snippets_of(n, None, "ceil") for n in (31, 32, 33)] == [2, 2, 3]
    assert [snippets_of(n, None, "floor_plus_one") for n in (31, 32, 33)] == [2, 3, 3]
    assert snippets_of(32, 7, "floor_plus_one") == 7  # the feature files' T wins


def test_auc_over_the_concatenation_by_hand():
    videos = [SnippetVideo(np.array([0.3, 0.6]), np.array([[0, 16], [16, 32]]), 2, [(16, 32)]),
              SnippetVideo(np.array([0.5]), np.array([[0, 16]]), 1, [])]
    truth, scores = snippet_curves(videos)
    assert len(truth) == len(scores) == 48
    # positives (16 frames at 0.6) all above the negatives (0.3 and 0.5): AUC 1
    assert snippet_frame_auc(videos) == 1.0
    flipped = [SnippetVideo(np.array([0.6, 0.3]), np.array([[0, 16], [16, 32]]), 2, [(16, 32)]), videos[1]]
    # positives at 0.3 below every negative (0.6 and 0.5): AUC 0
    assert snippet_frame_auc(flipped) == 0.0


def _reference_gt(snippets: int, annotation_line: str, clip_len: int = 16) -> np.ndarray:
    """The reference's steps for one video, as make_gt_ucf.py reads: a float32 vector of (T + 1) x 16
    frames, ones on [start:end] of each annotated pair that is not -1, the last 16 frames dropped."""
    vector = np.zeros((snippets + 1) * clip_len, dtype=np.float32)
    fields = annotation_line.strip("\n").split("  ")[1:-1]
    if "Normal" not in annotation_line:
        pairs = [[int(fields[i]), int(fields[i + 1])] for i in range(1, len(fields) - 1, 2)]
        for start, end in pairs:
            if start != -1 and end != -1:
                vector[start:end] = 1.0
    return vector[:-clip_len]


def test_ground_truth_and_auc_equal_the_reference_procedure(tmp_path):
    rng = np.random.default_rng(29)
    lines, snippets, scores, bounds = [], [], [], []
    for index in range(40):
        t = int(rng.integers(1, 60))
        frames = 16 * t - int(rng.integers(0, 16))
        cuts = np.sort(rng.choice(np.arange(1, frames + 40), 4, replace=False))
        label = "Normal" if index % 3 == 0 else "Robbery"
        pairs = "-1  -1  -1  -1" if label == "Normal" else (
            f"{cuts[0]}  {cuts[1]}  -1  -1" if index % 2 else "  ".join(str(c) for c in cuts))
        prefix = "Normal_Videos_" if label == "Normal" else "Robbery"
        lines.append(f"{prefix}{index:03d}_x264.mp4  {label}  {pairs}  \n")
        k = int(rng.integers(1, min(t, 32) + 1))
        edges = (np.arange(k + 1) * frames) // k
        snippets.append(t)
        bounds.append(np.stack([edges[:-1], edges[1:]], axis=1))
        scores.append(rng.random(k).astype(np.float32))
    annotation = tmp_path / "Temporal_Anomaly_Annotation.txt"
    annotation.write_text("".join(lines))
    parsed = read_ucf_temporal(annotation)
    videos = [SnippetVideo(s, b, t, parsed[line.split("  ")[0]][1])
              for s, b, t, line in zip(scores, bounds, snippets, lines, strict=True)]
    truth, ours = snippet_curves(videos)
    reference = np.concatenate([_reference_gt(t, line) for t, line in zip(snippets, lines, strict=True)])
    np.testing.assert_array_equal(truth, reference)  # bit for bit, float32
    # UR-DMU's scoring: per-snippet scores repeated 16 times, roc_curve + auc
    per_snippet = [s[np.minimum(np.searchsorted(b[:, 1], 16 * np.arange(t), side="right"), len(b) - 1)]
                   for s, b, t in zip(scores, bounds, snippets, strict=True)]
    predicted = np.concatenate([np.repeat(p, 16) for p in per_snippet])
    np.testing.assert_array_equal(ours, predicted)
    fpr, tpr, _ = roc_curve(reference, predicted)
    assert snippet_frame_auc(videos) == pytest.approx(auc(fpr, tpr), abs=1e-12)
    path = tmp_path / "gt-ucf.npy"
    write_ground_truth(str(path), truth)
    np.testing.assert_array_equal(np.load(path), reference)
    assert snippet_frame_auc(videos, read_ground_truth(str(path))) == snippet_frame_auc(videos)


def test_a_ground_truth_of_another_length_or_shape_is_refused(tmp_path):
    videos = [SnippetVideo(np.array([0.3, 0.6]), np.array([[0, 16], [16, 32]]), 2, [(16, 32)])]
    with pytest.raises(ValueError, match="holds 48 frames, the videos' 16-frame scores 32"):
        snippet_frame_auc(videos, np.zeros(48, np.float32))
    np.save(tmp_path / "bad.npy", np.full((2, 16), 2.0))
    with pytest.raises(ValueError, match="bad.npy: a frame ground truth is a 1-D array of 0 and 1"):
        read_ground_truth(str(tmp_path / "bad.npy"))
