"""The on-disk layout of a corpus and the record that describes one of its videos.

A corpus is a folder::

    <corpus>/videos/<relative path>          the video files (any of VIDEO_EXTENSIONS)
    <corpus>/annotations/train.txt           `<relative path> <label>` per line
    <corpus>/annotations/test.txt            `<relative path> <label>` per line
    <corpus>/annotations/test_temporal.txt   optional, UCF-Crime temporal format
    <corpus>/annotations/UCF_Eval.json       optional instead, VERA's ground truth (with frame counts)

Labels are `Normal`, an anomaly category (:data:`KNOWN_CATEGORIES`, plus those a corpus declares in
``ingest.categories``) or `unlabelled` (a video whose class nobody gave: scored, never trained or evaluated
on). A folder without `annotations/` is a corpus of unlabelled videos (see
:func:`dualvad.corpus.readers.read_corpus`). Frame intervals are half-open `[start, end)` frame indices
(0-based) everywhere in this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

VIDEOS_DIR = "videos"
ANNOTATIONS_DIR = "annotations"
TRAIN_LIST = "train.txt"
TEST_LIST = "test.txt"
TEMPORAL_FILE = "test_temporal.txt"
NORMAL_LABEL = "Normal"
UNLABELLED = "unlabelled"  # a video without a label: neither normal nor anomalous
SYNTHETIC_CATEGORIES = ("Speeding", "Collision", "Explosion", "Intrusion", "Scattering")
# the events dualvad.corpus.real_events injects into real footage (the real-footage corpus)
REAL_FOOTAGE_CATEGORIES = ("Pasted", "LensCover", "Defocus", "SceneCut", "FrozenFrame", "Flash")
UCF_CRIME_CATEGORIES = ("Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
                        "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism")
XD_VIOLENCE_CATEGORIES = ("Fighting", "Shooting", "Riot", "Abuse", "Car accident", "Explosion")
UNNAMED_ANOMALY_LABELS = ("Anomaly", "Abnormal")  # anomalous, category not given
KNOWN_CATEGORIES: tuple[str, ...] = tuple(sorted(
    {*SYNTHETIC_CATEGORIES, *REAL_FOOTAGE_CATEGORIES, *UCF_CRIME_CATEGORIES, *XD_VIOLENCE_CATEGORIES,
     *UNNAMED_ANOMALY_LABELS}))
"""The anomaly categories every corpus may use: the synthetic corpus's, the real-footage corpus's six injected
kinds, UCF-Crime's 13, XD-Violence's 6 and the two labels of an anomaly without a category."""
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
SPLITS = ("train", "test")

Interval = tuple[int, int]
"""A half-open frame range `[start, end)`: 0-based frame indices, `start < end`."""


class CorpusFormatError(ValueError):
    """A corpus file is missing or malformed; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a corpus.

    Attributes:
        video_id: path relative to `<corpus>/videos`, posix separators, with extension,
            e.g. `"Speeding/speeding_0003.mp4"`. Unique within a corpus.
        path: absolute path of the video file.
        label: `"Normal"`, an anomaly category or `"unlabelled"` (video-level label).
        split: `"train"` or `"test"`.
        intervals: temporal annotation as half-open `[start, end)` frame ranges, sorted;
            `()` = annotated and without anomaly; `None` = no temporal annotation.
        annotated_frames: the video's frame count as the annotation file states it (VERA's
            `UCF_Eval.json` `length`), `None` where the file gives none. The VERA protocol uses it.
    """

    video_id: str
    path: str
    label: str
    split: str
    intervals: tuple[Interval, ...] | None = None
    annotated_frames: int | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(
                f"VideoRecord {self.video_id!r}: split must be one of {SPLITS}, got {self.split!r}"
            )

    @property
    def is_anomalous(self) -> bool:
        """True when the video-level label is an anomaly category (neither `Normal` nor `unlabelled`)."""
        return is_anomaly_label(self.label)

    @property
    def is_labelled(self) -> bool:
        """False for an `unlabelled` video."""
        return self.label != UNLABELLED


def is_anomaly_label(label: str) -> bool:
    """True for an anomaly category, False for `Normal` and `unlabelled`."""
    return label not in (NORMAL_LABEL, UNLABELLED)


def label_vocabulary(extra_categories: Iterable[str] = ()) -> dict[str, str]:
    """Every valid label by its :func:`label_key` -> its canonical spelling: `Normal`, `unlabelled`,
    :data:`KNOWN_CATEGORIES` and ``extra_categories`` (a corpus's own, ``ingest.categories``)."""
    labels = [NORMAL_LABEL, UNLABELLED, *KNOWN_CATEGORIES, *extra_categories]
    return {label_key(label): label for label in labels}


def label_key(label: str) -> str:
    """A label as :func:`label_vocabulary` matches it: lower case, without `_`, `-` and spaces, so that
    UCF-Crime's folder `Road_Accidents` is its class `RoadAccidents` and `normal` is `Normal`."""
    return label.lower().replace("_", "").replace("-", "").replace(" ", "")


def format_error(path: object, line_no: int | None, problem: str, expected: str) -> str:
    """A `CorpusFormatError` message: `<file>:<line>: <problem>; expected <expected>`."""
    where = f"{path}:{line_no}" if line_no is not None else f"{path}"
    return f"{where}: {problem}; expected {expected}"


def has_video_extension(name: str) -> bool:
    """True when `name` ends with one of VIDEO_EXTENSIONS (case-insensitive)."""
    return name.lower().endswith(VIDEO_EXTENSIONS)


# The real UCF-Crime annotation files, read when `annotations/` holds them instead of
# TRAIN_LIST / TEST_LIST.
UCF_TRAIN_LIST = "Anomaly_Train.txt"
UCF_TEMPORAL_FILE = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
# VERA's ground truth (vera-framework/VERA, Data/UCF_Eval.json): a JSON list of
# `{"video": "frames/<Category>/<name>.mp4", "temporal_label": [s1, e1, s2, e2], "length": L}`; read in
# place of the temporal file (TEMPORAL_FILE or UCF_TEMPORAL_FILE) of either layout.
VERA_EVAL_FILE = "UCF_Eval.json"
