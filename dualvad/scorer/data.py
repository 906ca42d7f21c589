"""From the segments table to per-video arrays the scorer trains and scores on (no Ray).

The segments table holds one row per (video, segment); the scorer sees a video as a whole:
features (K, D), one video-level label, one category. This module does that regrouping,
the train/validation split and feature standardisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dualvad import schema as S
from dualvad.corpus.layout import NORMAL_LABEL, UNLABELLED, UNNAMED_ANOMALY_LABELS, is_anomaly_label


@dataclass(frozen=True)
class VideoSet:
    """N videos of K segments each, in a fixed order."""

    video_ids: list[str]
    features: np.ndarray  # float32 (N, K, D)
    labels: np.ndarray  # float32 (N,), 1 = anomalous video (0 for normal and unlabelled ones)
    category_index: np.ndarray  # int64 (N,), index into ``categories`` (0 = Normal)
    category_known: np.ndarray  # bool (N,)
    categories: tuple[str, ...]  # category names; categories[0] == "Normal"
    splits: np.ndarray  # str (N,)
    bounds: np.ndarray  # int64 (N, K, 2), [start, end) frames of each segment
    gt_fraction: np.ndarray  # float32 (N, K), NaN where the video has no temporal annotation
    labelled: np.ndarray  # bool (N,), False for an `unlabelled` video (its ``labels`` entry means nothing)
    # float32 (N, K, C, D): each crop's features, from feature files with C > 1 crops (``features`` is their
    # mean); None: one crop
    crop_features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.video_ids)

    def subset(self, keep: np.ndarray) -> VideoSet:
        """The videos where boolean mask (N,) ``keep`` is true (or at integer indices ``keep``)."""
        index = np.flatnonzero(keep) if keep.dtype == bool else keep
        return VideoSet(
            [self.video_ids[i] for i in index], self.features[index], self.labels[index],
            self.category_index[index], self.category_known[index], self.categories,
            self.splits[index], self.bounds[index], self.gt_fraction[index], self.labelled[index],
            None if self.crop_features is None else self.crop_features[index],
        )

    def split(self, name: str) -> VideoSet:
        return self.subset(self.splits == name)


def category_names(labels: list[str]) -> tuple[str, ...]:
    """``("Normal", *sorted anomaly categories)`` for the labels of a corpus."""
    others = sorted({label for label in labels} - {NORMAL_LABEL, UNLABELLED, *UNNAMED_ANOMALY_LABELS})
    return (NORMAL_LABEL, *others)


def video_set_from_segments(table: pa.Table, categories: tuple[str, ...] | None = None) -> VideoSet:
    """Regroup a segments table (DESIGN.md contract) into a :class:`VideoSet`, sorted by video id.

    Args:
        table: segments rows; every video must have the same number K of segments.
        categories: category names to index into (a trained scorer's); by default, the
            categories found in ``table``.

    Raises:
        ValueError: videos with different K, or a missing segment.
    """
    table = table.sort_by([(S.VIDEO_ID, "ascending"), (S.SEGMENT_INDEX, "ascending")])
    video_ids = pc.unique(table[S.VIDEO_ID]).to_pylist()
    rows, videos = table.num_rows, len(video_ids)
    k = rows // videos if videos else 0
    if videos == 0 or rows != k * videos:
        raise ValueError(f"segments table has {rows} rows for {videos} videos: every video must have "
                         "the same number of segments; re-run ingest with one --segments value")
    segment_index = table[S.SEGMENT_INDEX].to_numpy().reshape(videos, k)
    if not (segment_index == np.arange(k)).all():
        raise ValueError("segments table is missing segments of some videos; re-run ingest into a fresh run")
    features = np.stack(table[S.FEATURE].to_numpy(zero_copy_only=False)).astype(np.float32)
    first = np.arange(videos) * k
    labels = table[S.LABEL].take(pa.array(first)).to_pylist()
    names = categories or category_names(labels)
    index = {name: i for i, name in enumerate(names)}
    gt = table[S.GT_FRACTION].to_numpy(zero_copy_only=False).astype(np.float32)
    return VideoSet(
        video_ids=video_ids,
        features=features.reshape(videos, k, -1),
        labels=np.array([is_anomaly_label(label) for label in labels], dtype=np.float32),
        category_index=np.array([index.get(label, 0) for label in labels], dtype=np.int64),
        category_known=np.array([label in index for label in labels], dtype=bool),
        categories=tuple(names),
        splits=np.array(table[S.SPLIT].take(pa.array(first)).to_pylist()),
        bounds=np.stack([table[S.START_FRAME].to_numpy(), table[S.END_FRAME].to_numpy()], axis=1)
        .reshape(videos, k, 2),
        gt_fraction=gt.reshape(videos, k),
        labelled=np.array([label != UNLABELLED for label in labels], dtype=bool),
        crop_features=_crop_features(table, videos, k),
    )


def _crop_features(table: pa.Table, videos: int, k: int) -> np.ndarray | None:
    """float32 (N, K, C, D) from the ``crop_features`` column, or None where the table has none (one crop,
    decoded videos, or a run ingested before the column).

    Raises:
        ValueError: some videos have crops and others not, or not the same number of them.
    """
    if S.CROP_FEATURES not in table.column_names or table[S.CROP_FEATURES].null_count == table.num_rows:
        return None
    if table[S.CROP_FEATURES].null_count:
        raise ValueError("some videos' segments have crop features and others not: ingest every video from "
                         "feature files with the same number of crops")
    counts = pc.list_value_length(table[S.CROP_FEATURES]).unique().to_pylist()
    if len(counts) != 1:
        raise ValueError(f"the videos' segments have different numbers of crops ({sorted(counts)}): ingest "
                         "feature files with the same crops for every video")
    flat = pc.list_flatten(pc.list_flatten(table[S.CROP_FEATURES])).to_numpy().astype(np.float32)
    return flat.reshape(videos, k, counts[0], -1)


def training_features(videos: VideoSet, crops: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 (M, K, D) training samples, int64 (M,) the video of each): one per video and crop for
    ``crops="each"`` with several crops (video-major), else one per video, the crops' mean."""
    if crops == "each" and videos.crop_features is not None:
        n, k, c, d = videos.crop_features.shape
        samples = videos.crop_features.transpose(0, 2, 1, 3).reshape(n * c, k, d)
        return samples, np.repeat(np.arange(n, dtype=np.int64), c)
    return videos.features, np.arange(len(videos), dtype=np.int64)


def scoring_features(videos: VideoSet, test_crop: int | None) -> np.ndarray:
    """float32 (N, K, D): the features of crop ``test_crop``, or the crops' mean for ``None``.

    Raises:
        ValueError: ``test_crop`` is not one of the videos' crops (a video without crop features has crop 0).
    """
    if test_crop is None:
        return videos.features
    crops = 1 if videos.crop_features is None else videos.crop_features.shape[2]
    if test_crop >= crops:
        raise ValueError(f"scorer.test_crop={test_crop}, but the segments hold {crops} crop(s) "
                         f"(0-{crops - 1}): name one of them, or null for their mean")
    return videos.features if videos.crop_features is None else videos.crop_features[:, :, test_crop]


def training_segments(table: pa.Table) -> pa.Table:
    """The ``train`` split's rows of a segments table, or the whole table when it has none (a corpus of
    unlabelled test videos, which train-scorer refuses with its own message). Test videos ingested one
    segment per snippet (``ingest.features_snippets=keep_test``) differ in K; the training videos do not."""
    train = table.filter(pc.equal(table[S.SPLIT], "train"))
    return train if train.num_rows else table


def videos_by_segment_count(table: pa.Table) -> list[pa.Table]:
    """A segments table split into tables of videos with the same number of segments (K), by ascending K:
    each one a :func:`video_set_from_segments` input."""
    counts = table.group_by(S.VIDEO_ID).aggregate([([], "count_all")])
    groups = []
    for k in sorted(set(counts["count_all"].to_pylist())):
        ids = counts.filter(pc.equal(counts["count_all"], k))[S.VIDEO_ID]
        groups.append(table.filter(pc.is_in(table[S.VIDEO_ID], ids)))
    return groups


def train_validation_split(videos: VideoSet, share: float, seed: int) -> tuple[VideoSet, VideoSet]:
    """Hold out ``share`` of the videos of each label (stratified, seeded) for validation.

    At least one video per label goes to each side when a label has two or more videos.
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(len(videos), dtype=bool)
    for label in (0.0, 1.0):
        members = np.flatnonzero(videos.labels == label)
        count = min(max(int(round(share * len(members))), 1), len(members) - 1) if len(members) > 1 else 0
        held[rng.permutation(members)[:count]] = True
    return videos.subset(~held), videos.subset(held)


def labelled_training_videos(videos: VideoSet) -> VideoSet:
    """The videos train-scorer learns from: the ``train`` split's labelled ones (in ``videos``' order)."""
    train_all = videos.split("train")
    return train_all.subset(train_all.labelled)


def held_out_validation(videos: VideoSet, share: float, seed: int) -> tuple[VideoSet, VideoSet | None]:
    """(training videos, validation videos) as train-scorer splits ``videos`` (its
    :func:`labelled_training_videos`): :func:`train_validation_split`, or ``(videos, None)`` when the held-out
    share cannot hold both classes (then nothing is held out: the checkpoint is picked on ``videos``).
    A function of the videos, ``share`` and ``seed`` alone, so the evaluate stage finds the same
    validation videos from the run's segments and the scorer's recorded settings."""
    train, val = train_validation_split(videos, share, seed)
    if len(np.unique(val.labels)) < 2:
        return videos, None
    return train, val


@dataclass(frozen=True)
class FeatureNormalizer:
    """Per-dimension standardisation fitted on training features."""

    mean: np.ndarray  # float32 (D,)
    std: np.ndarray  # float32 (D,), >= 1e-6

    @staticmethod
    def fit(features: np.ndarray) -> FeatureNormalizer:
        """features: (..., D) -> statistics over every leading axis."""
        flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
        return FeatureNormalizer(flat.mean(axis=0).astype(np.float32),
                                 np.maximum(flat.std(axis=0), 1e-6).astype(np.float32))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(..., D) -> float32 (..., D) standardised."""
        return ((features - self.mean) / self.std).astype(np.float32)
