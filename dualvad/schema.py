"""Column names and Arrow schemas of the tables that stages exchange (DESIGN.md contracts).

Constants, not string literals scattered through the stages: a renamed column breaks at
import, not three stages later.
"""

from __future__ import annotations

import pyarrow as pa

# Segments table: RUN/segments/*.parquet, one row per (video, segment).
VIDEO_ID = "video_id"
SEGMENT_INDEX = "segment_index"
START_FRAME = "start_frame"  # inclusive
END_FRAME = "end_frame"  # exclusive
FPS = "fps"
NUM_FRAMES = "num_frames"  # frames in the whole video
FEATURE = "feature"
LABEL = "label"  # video-level: "Normal" or an anomaly category
GT_FRACTION = "gt_fraction"  # share of the segment's frames inside a temporal annotation
SPLIT = "split"  # "train" or "test"
VIDEO_PATH = "video_path"  # where later stages re-decode frames from

SEGMENTS_SCHEMA = pa.schema(
    [
        (VIDEO_ID, pa.string()),
        (SEGMENT_INDEX, pa.int32()),
        (START_FRAME, pa.int64()),
        (END_FRAME, pa.int64()),
        (FPS, pa.float64()),
        (NUM_FRAMES, pa.int64()),
        (FEATURE, pa.list_(pa.float32())),
        (LABEL, pa.string()),
        (GT_FRACTION, pa.float32()),
        (SPLIT, pa.string()),
        (VIDEO_PATH, pa.string()),
    ]
)

# Failures table: RUN/<stage>/_failures.parquet, one row per input that could not be processed.
REASON = "reason"
FAILURES_SCHEMA = pa.schema([(VIDEO_ID, pa.string()), (VIDEO_PATH, pa.string()), (REASON, pa.string())])

# Scores table: RUN/scores/*.parquet, one row per (video, segment); score in [0, 1].
SCORE = "score"
SCORES_SCHEMA = pa.schema([(VIDEO_ID, pa.string()), (SEGMENT_INDEX, pa.int32()), (SCORE, pa.float32())])
