"""Question templates and answer derivations: exact values."""

import numpy as np

from dualvad.benchmarks import templates as T
from dualvad.benchmarks.builder import SampledVideo, clip_windows, frame_labels
from dualvad.video.gop import frame_size


def test_answers_from_frame_flags():
    assert T.localization_answer([False, True, True, False]) == "Frame2, Frame3"
    assert T.localization_answer([False] * 4) == "None"
    assert [T.abnormality_score(f) for f in ([False] * 8, [True] + [False] * 7, [True] * 4 + [False] * 4,
                                             [True] * 8)] == [0, 1, 5, 10]
    assert T.frame_prefix(3) == "Frame1: <image>\nFrame2: <image>\nFrame3: <image>"


def test_conversations_shape_and_seeded_paraphrase():
    turns = T.image_conversation(T.row_rng(0, "a"), anomalous=True, category="Explosion")
    assert [t["from"] for t in turns] == ["human", "gpt", "human", "gpt"]
    assert turns[0]["value"].startswith("<image>\n") and turns[1]["value"] == "Yes"
    assert turns[3]["value"] == "Explosion"
    assert T.image_conversation(T.row_rng(0, "a"), True, "Explosion") == turns
    normal = T.image_conversation(T.row_rng(0, "b"), anomalous=False, category=None)
    assert [t["value"] for t in normal[1:]] == ["No"]
    chosen = {T.image_conversation(T.row_rng(s, "a"), False, None)[0]["value"] for s in range(40)}
    assert len(chosen) > 1  # paraphrases vary with the seed
    video = T.video_conversation(T.row_rng(1, "v"), [False, True])
    assert video[0]["value"].startswith("Frame1: <image>\nFrame2: <image>\n")
    assert (video[1]["value"], video[3]["value"]) == ("Frame2", "5")


def video(label="Fight", intervals=(10, 20), scores=(0.1, 0.9, 0.6)):
    return SampledVideo("v.mp4", "/v.mp4", label, "train", 15.0, (5, 12, 25), scores, intervals)


def test_frame_labels_annotation_normal_and_pseudo():
    labels, pseudo = frame_labels(video(), 0.5)
    assert labels.tolist() == [False, True, False] and not pseudo
    labels, pseudo = frame_labels(video(label="Normal", intervals=None), 0.5)
    assert labels.tolist() == [False, False, False] and not pseudo
    labels, pseudo = frame_labels(video(intervals=None), 0.5)
    assert labels.tolist() == [False, True, True] and pseudo


def test_clip_windows_and_sizes():
    assert clip_windows(16, 8) == [range(0, 8), range(8, 16)]
    assert clip_windows(19, 8) == [range(0, 8), range(8, 16)]
    assert clip_windows(5, 8) == [range(0, 5)]
    assert frame_size(640, 272, 448) == (448, 190)
    assert frame_size(160, 120, 448) == (448, 336)
    np.testing.assert_equal(frame_size(120, 160, 64), (48, 64))
