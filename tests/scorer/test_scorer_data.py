"""Regrouping the segments table into per-video arrays; the split; the normaliser."""

import numpy as np
import pyarrow as pa
import pytest

from dualvad import schema as S
from dualvad.scorer.data import (
    FeatureNormalizer,
    held_out_validation,
    labelled_training_videos,
    scoring_features,
    train_validation_split,
    training_features,
    training_segments,
    video_set_from_segments,
    videos_by_segment_count,
)


def segments(videos: dict[str, str], k: int = 3, dim: int = 2) -> pa.Table:
    rows = []
    for n, (video_id, label) in enumerate(videos.items()):
        for i in range(k):
            rows.append({S.VIDEO_ID: video_id, S.SEGMENT_INDEX: i, S.START_FRAME: 10 * i,
                         S.END_FRAME: 10 * i + 10, S.FPS: 15.0, S.NUM_FRAMES: 10 * k,
                         S.FEATURE: [float(n), float(i)][:dim], S.LABEL: label,
                         S.GT_FRACTION: None, S.SPLIT: "train", S.VIDEO_PATH: f"/v/{video_id}"})
    return pa.Table.from_pylist(rows[::-1], schema=S.SEGMENTS_SCHEMA)  # out of order on purpose


def test_regroups_sorted_with_labels_and_categories():
    videos = video_set_from_segments(segments({"b.mp4": "Fight", "a.mp4": "Normal", "c.mp4": "Anomaly"}))
    assert videos.video_ids == ["a.mp4", "b.mp4", "c.mp4"]
    assert videos.features.shape == (3, 3, 2) and videos.features.dtype == np.float32
    np.testing.assert_array_equal(videos.features[1, :, 1], [0, 1, 2])  # segment order restored
    np.testing.assert_array_equal(videos.labels, [0, 1, 1])
    assert videos.categories == ("Normal", "Fight")
    np.testing.assert_array_equal(videos.category_index, [0, 1, 0])
    np.testing.assert_array_equal(videos.category_known, [True, True, False])  # "Anomaly": unknown kind
    np.testing.assert_array_equal(videos.bounds[0, :, 0], [0, 10, 20])
    assert np.isnan(videos.gt_fraction).all()


def test_an_unlabelled_video_is_neither_anomalous_nor_a_category():
    videos = video_set_from_segments(segments({"a.mp4": "Normal", "b.mp4": "Fight", "u.mp4": "unlabelled"}))
    np.testing.assert_array_equal(videos.labels, [0, 1, 0])
    np.testing.assert_array_equal(videos.labelled, [True, True, False])
    np.testing.assert_array_equal(videos.category_known, [True, True, False])
    assert videos.categories == ("Normal", "Fight")
    assert videos.subset(videos.labelled).video_ids == ["a.mp4", "b.mp4"]


def test_uneven_segment_counts_are_an_error():
    table = pa.concat_tables([segments({"a.mp4": "Normal"}, k=3), segments({"b.mp4": "Normal"}, k=2)])
    with pytest.raises(ValueError, match="same number of segments"):
        video_set_from_segments(table)


def test_split_is_stratified_seeded_and_disjoint():
    labels = {f"n{i}.mp4": "Normal" for i in range(10)} | {f"f{i}.mp4": "Fight" for i in range(5)}
    videos = video_set_from_segments(segments(labels))
    train, val = train_validation_split(videos, 0.2, seed=3)
    assert (int(val.labels.sum()), len(val)) == (1, 3)  # 1 of 5 anomalous, 2 of 10 normal
    assert not set(train.video_ids) & set(val.video_ids) and len(train) + len(val) == 15
    again, _ = train_validation_split(videos, 0.2, seed=3)
    assert again.video_ids == train.video_ids


def test_held_out_validation_is_train_scorers_split_or_none():
    labels = {f"n{i}.mp4": "Normal" for i in range(10)} | {f"f{i}.mp4": "Fight" for i in range(5)}
    labels["u.mp4"] = "unlabelled"
    videos = labelled_training_videos(video_set_from_segments(segments(labels)))
    assert len(videos) == 15 and "u.mp4" not in videos.video_ids
    train, val = held_out_validation(videos, 0.2, seed=3)
    expected_train, expected_val = train_validation_split(videos, 0.2, seed=3)
    assert (train.video_ids, val.video_ids) == (expected_train.video_ids, expected_val.video_ids)
    # one anomalous video: the held-out share cannot hold both classes, nothing is held out
    small = video_set_from_segments(segments({"n0.mp4": "Normal", "n1.mp4": "Normal", "f0.mp4": "Fight"}))
    same, none = held_out_validation(small, 0.2, seed=3)
    assert none is None and same is small


def test_normalizer_standardises():
    features = np.array([[[1.0, 5.0], [3.0, 5.0]]], dtype=np.float32)
    normalizer = FeatureNormalizer.fit(features)
    np.testing.assert_allclose(normalizer.mean, [2.0, 5.0])
    np.testing.assert_allclose(normalizer(features)[0, :, 0], [-1.0, 1.0])
    assert np.isfinite(normalizer(features)).all()  # constant column: std floored, no NaN


def with_crops(table: pa.Table, crops: int) -> pa.Table:
    """``table`` with ``crops`` crop features per segment: crop c is the feature plus 10 c (mean: feature + 10
    (C - 1) / 2), the feature set to that mean, as ingest writes them."""
    rows = table.to_pylist()
    for row in rows:
        row[S.CROP_FEATURES] = [[v + 10.0 * c for v in row[S.FEATURE]] for c in range(crops)]
        row[S.FEATURE] = [v + 5.0 * (crops - 1) for v in row[S.FEATURE]]
    return pa.Table.from_pylist(rows, schema=S.SEGMENTS_SCHEMA)


def test_every_crop_a_sample_or_their_mean_and_a_named_test_crop():
    videos = video_set_from_segments(with_crops(segments({"a.mp4": "Normal", "b.mp4": "Fight"}), 3))
    assert videos.crop_features.shape == (2, 3, 3, 2)
    samples, owner = training_features(videos, "each")
    assert owner.tolist() == [0, 0, 0, 1, 1, 1]  # video-major: a's three crops, then b's
    assert samples[:, 0, 0].tolist() == [0.0, 10.0, 20.0, 1.0, 11.0, 21.0]  # (video n + 10 c) at segment 0
    mean, owner = training_features(videos, "mean")
    assert owner.tolist() == [0, 1] and mean[:, 0, 0].tolist() == [10.0, 11.0]
    assert scoring_features(videos, None)[:, 2, 1].tolist() == [12.0, 12.0]  # segment 2: 2 + 10 (mean)
    assert scoring_features(videos, 2)[:, 2, 1].tolist() == [22.0, 22.0]
    with pytest.raises(ValueError, match=r"scorer.test_crop=3, but the segments hold 3 crop\(s\) \(0-2\)"):
        scoring_features(videos, 3)
    plain = video_set_from_segments(segments({"a.mp4": "Normal"}))  # decoded videos: one crop, crop 0
    assert plain.crop_features is None and training_features(plain, "each")[0] is plain.features
    assert scoring_features(plain, 0) is plain.features
    assert videos.subset(np.array([1])).crop_features[0, 0, 0].tolist() == [1.0, 0.0]


def test_test_videos_of_other_lengths_stay_out_of_training_and_score_by_length():
    train = segments({"a.mp4": "Normal", "b.mp4": "Fight"}, k=3)
    test = segments({"t.mp4": "Fight"}, k=5).to_pylist()
    for row in test:
        row[S.SPLIT] = "test"
    table = pa.concat_tables([train, pa.Table.from_pylist(test, schema=S.SEGMENTS_SCHEMA)])
    assert video_set_from_segments(training_segments(table)).video_ids == ["a.mp4", "b.mp4"]
    groups = videos_by_segment_count(table)
    assert [video_set_from_segments(g).features.shape for g in groups] == [(2, 3, 2), (1, 5, 2)]
