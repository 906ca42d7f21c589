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
LABEL = "label"  # video-level: "Normal", an anomaly category or "unlabelled"
GT_FRACTION = "gt_fraction"  # share of the segment's frames inside a temporal annotation
SPLIT = "split"  # "train" or "test"
VIDEO_PATH = "video_path"  # where later stages re-decode frames from
GT_INTERVALS = "gt_intervals"  # temporal annotation flattened [s1, e1, s2, e2, ...]; null = none
# the frame count the annotation file states (VERA's UCF_Eval.json `length`); null = it states none
ANNOTATED_FRAMES = "annotated_frames"
# ingested from feature files (ingest.features) with C > 1 crops: the segment's feature of each crop, C lists
# of D (``feature`` is their mean); null = one crop, or decoded from the video
CROP_FEATURES = "crop_features"
SNIPPETS = "snippets"  # the video's 16-frame snippets T in its feature files; null = decoded from the video
# the video's keyframes (frame indices, sorted) its features' frames were chosen with, repeated on each of its
# rows; the sampler places frames by them (sample.within_decode_window). null = not read (feature files,
# ingest.snap_to_keyframes off); the column is absent from runs ingested before it existed
KEYFRAMES = "keyframes"

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
        (GT_INTERVALS, pa.list_(pa.int64())),
        (ANNOTATED_FRAMES, pa.int64()),
        (CROP_FEATURES, pa.list_(pa.list_(pa.float32()))),
        (SNIPPETS, pa.int64()),
        (KEYFRAMES, pa.list_(pa.int64())),
    ]
)

# Failures table: RUN/<stage>/_failures.parquet, one row per input that could not be processed.
REASON = "reason"
FAILURES_SCHEMA = pa.schema([(VIDEO_ID, pa.string()), (VIDEO_PATH, pa.string()), (REASON, pa.string())])

# Scores table: RUN/scores/*.parquet, one row per (video, segment); score in [0, 1].
SCORE = "score"
SCORES_SCHEMA = pa.schema([(VIDEO_ID, pa.string()), (SEGMENT_INDEX, pa.int32()), (SCORE, pa.float32())])

# Samples table: RUN/samples/*.parquet, one row per video: the frames a strategy selected.
STRATEGY = "strategy"
BUDGET = "budget"
FRAMES = "frames"  # sorted frame indices
PER_SEGMENT = "per_segment"  # frames per segment (K,)
FRAME_SCORES = "frame_scores"  # the segment score of each selected frame
SEGMENT_SCORES = "segment_scores"  # all K segment scores of the video
SAMPLES_SCHEMA = pa.schema(
    [
        (VIDEO_ID, pa.string()),
        (VIDEO_PATH, pa.string()),
        (LABEL, pa.string()),
        (SPLIT, pa.string()),
        (FPS, pa.float64()),
        (NUM_FRAMES, pa.int64()),
        (STRATEGY, pa.string()),
        (BUDGET, pa.int32()),
        (FRAMES, pa.list_(pa.int64())),
        (PER_SEGMENT, pa.list_(pa.int32())),
        (FRAME_SCORES, pa.list_(pa.float32())),
        (SEGMENT_SCORES, pa.list_(pa.float32())),
        (GT_INTERVALS, pa.list_(pa.int64())),
    ]
)

# Benchmarks: RUN/benchmarks/{image,video}/shard-*.parquet (+ manifest.json).
ROW_ID = "id"
CONVERSATIONS = "conversations"  # [{from: human|gpt, value: text}, ...] (InternVL style)
TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
PSEUDO = "pseudo"  # labels come from scorer pseudo-labels, not a temporal annotation
VIDEO_LABEL = "video_label"
CATEGORY = "category"
IMAGE_BENCH_SCHEMA = pa.schema(
    [
        (ROW_ID, pa.string()),
        (VIDEO_ID, pa.string()),
        ("frame_index", pa.int64()),
        ("time_s", pa.float64()),
        (SPLIT, pa.string()),
        (VIDEO_LABEL, pa.string()),
        ("image", pa.binary()),  # JPEG
        ("anomalous", pa.bool_()),
        (CATEGORY, pa.string()),  # null for normal frames
        (PSEUDO, pa.bool_()),
        (SCORE, pa.float32()),  # the scorer's score of the frame's segment
        (CONVERSATIONS, pa.list_(TURN)),
    ]
)
VIDEO_BENCH_SCHEMA = pa.schema(
    [
        (ROW_ID, pa.string()),
        (VIDEO_ID, pa.string()),
        ("frame_indices", pa.list_(pa.int64())),
        ("images", pa.list_(pa.binary())),  # JPEG, in time order
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        (SPLIT, pa.string()),
        (VIDEO_LABEL, pa.string()),
        ("abnormal", pa.list_(pa.bool_())),  # per frame
        ("abnormality_score", pa.int8()),  # 0-10
        (CATEGORY, pa.string()),  # null for normal clips
        (PSEUDO, pa.bool_()),
        (CONVERSATIONS, pa.list_(TURN)),
    ]
)

# Evaluation predictions: RUN/eval/predictions/<model>.parquet, one row per test video and model.
MODEL = "model"
EXPLANATION = "explanation"  # the VLM's generated localisation answer for its top clip
CLIP_STARTS = "clip_starts"  # position (in FRAMES) of each clip's first frame
CLIP_SCORES = "clip_scores"  # expected 0-10 abnormality score of each clip
THUMB_FRAMES = "thumb_frames"  # top-scoring sampled frames and their JPEGs, for the report
THUMB_JPEGS = "thumb_jpegs"
ERROR = "error"  # why a video could not be evaluated; null = evaluated
PREDICTIONS_SCHEMA = pa.schema(
    [
        (VIDEO_ID, pa.string()),
        (MODEL, pa.string()),
        (STRATEGY, pa.string()),
        (FRAMES, pa.list_(pa.int64())),
        (FRAME_SCORES, pa.list_(pa.float32())),  # P("Yes") of each sampled frame
        (CLIP_STARTS, pa.list_(pa.int32())),
        (CLIP_SCORES, pa.list_(pa.float32())),
        (EXPLANATION, pa.string()),
        (THUMB_FRAMES, pa.list_(pa.int64())),
        (THUMB_JPEGS, pa.list_(pa.binary())),
        (ERROR, pa.string()),
    ]
)
