"""Ingest from feature files (``ingest.features``): the segment rows of a video from its ``.npy`` files.

The driver scans the folder once (:func:`scan_corpus`: the ``.npy`` headers only, no data), records a
failure for every video without usable files (named file and reason, see
:func:`dualvad.corpus.feature_files.scan_features`), and hands the others to ingest's Ray Data tasks with
their files (:func:`feature_columns`). Each task reads a video's arrays, checks their values, pools the
snippets (:func:`dualvad.corpus.feature_files.pool_snippets`) and writes the rows ingest writes for a decoded
video, plus each crop's features and the snippet count. Where the video file is there, its frame count and
rate come from the container (no frame is decoded); else from the annotation (``UCF_Eval.json``'s
``length``) or ``16 x T``, at ``ingest.features_fps``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa

from dualvad import schema as S
from dualvad.config import IngestConfig
from dualvad.corpus.feature_files import (
    SNIPPET_FRAMES,
    VideoFeatureFiles,
    load_features,
    pool_snippets,
    scan_features,
)
from dualvad.corpus.layout import VideoRecord
from dualvad.errors import StageError
from dualvad.scorer.features import VideoFeatures
from dualvad.video.decode import VideoDecodeError, open_video

FEATURE_FILES, FEATURE_LAYOUT = "feature_files", "feature_layout"  # input-row columns of a feature video


def scan_corpus(records: list[VideoRecord], config: IngestConfig) -> tuple[dict[str, VideoFeatureFiles],
                                                                           list[dict[str, Any]], str]:
    """(usable videos' files by video id, failure rows of the others, an identity of the files: their paths,
    sizes and modification times, which enters the stage's fingerprint).

    Raises:
        StageError: ``ingest.features`` is not a folder.
    """
    try:
        scanned = scan_features(config.features, [r.video_id for r in records], config.features_layout)
    except FileNotFoundError as error:
        raise StageError(str(error)) from None
    paths = {r.video_id: r.path for r in records}
    usable = {v.video_id: v for v in scanned if v.problem is None}
    failures = [{S.VIDEO_ID: v.video_id, S.VIDEO_PATH: paths[v.video_id],
                 S.REASON: f"{v.video_id}: feature files: {v.problem}"}
                for v in scanned if v.problem is not None]
    digest = hashlib.sha256()
    for video in sorted(usable.values(), key=lambda v: v.video_id):
        for rel in video.files:
            info = os.stat(os.path.join(config.features, rel))
            digest.update(json.dumps([rel, info.st_size, info.st_mtime_ns]).encode())
    return usable, failures, digest.hexdigest()[:16]


def feature_columns(records: list[VideoRecord], files: dict[str, VideoFeatureFiles]) -> dict[str, pa.Array]:
    """The input rows' extra columns for ``records`` (all usable): each video's files and layout."""
    return {FEATURE_FILES: pa.array([list(files[r.video_id].files) for r in records], pa.list_(pa.string())),
            FEATURE_LAYOUT: pa.array([files[r.video_id].layout for r in records], pa.string())}


def video_from_files(record: VideoRecord, row: dict[str, Any],
                     config: IngestConfig) -> tuple[VideoFeatures, np.ndarray, int]:
    """(the video's segments as ingest writes them with the crops' mean as ``features``, its crop features
    float32 (K, C, D), its snippet count T).

    Raises:
        ValueError: unreadable or non-finite arrays, or too few frames for the segments (the message names
            the file or the numbers).
    """
    files = VideoFeatureFiles(record.video_id, tuple(row[FEATURE_FILES]), row[FEATURE_LAYOUT], None)
    snippets = load_features(config.features, files)  # (T, C, D)
    num_frames, fps = _frame_count(record, len(snippets), config)
    keep = config.features_snippets == "keep_test" and record.split == "test"
    crops, bounds = pool_snippets(snippets, None if keep else config.segments, num_frames)
    return VideoFeatures(num_frames, fps, bounds, crops.mean(axis=1)), crops, len(snippets)


def _frame_count(record: VideoRecord, snippets: int, config: IngestConfig) -> tuple[int, float]:
    """(frames, fps): the video file's container header where the file is there, else the annotation's frame
    count or 16 T, at ``ingest.features_fps``."""
    if os.path.exists(record.path) or "://" in record.path:
        try:
            reader = open_video(record.path, max_pixels=config.max_pixels)
            return len(reader), float(reader.get_avg_fps())
        except VideoDecodeError:
            if "://" not in record.path:
                raise
    if record.annotated_frames is not None:
        return record.annotated_frames, config.features_fps
    return SNIPPET_FRAMES * snippets, config.features_fps
