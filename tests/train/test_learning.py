"""The VLM path learns: through the real stage code (benchmark shards, collator, Ray Train + DeepSpeed
ZeRO-2 on 2 CPU workers, the Hugging Face export, the judge), the tiny InternVL learns to answer "Yes" to
frames carrying an obvious visual cue and "No" to frames without it, on held-out frames.

The cue is a large bright flash (a white disc over a third of the frame) on random texture: visible at the
tiny model's 56 px tiles, unlike most of the generated corpus's events (speeding and collisions need
motion). If this fails, something between the benchmark rows and the judge is broken: labels, image
tokens, pixel values, the chat template, the optimizer or the export.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
from PIL import Image
from sklearn.metrics import roc_auc_score

from dualvad import paths
from dualvad import schema as S
from dualvad.benchmarks.templates import image_conversation, row_rng
from dualvad.config import load_config
from dualvad.pipeline.build_benchmarks import _manifest as benchmark_manifest
from dualvad.rundir import open_run
from dualvad.stages.registry import Stage
from dualvad.stages.runner import run_stage
from dualvad.train.finetune import run_finetune
from dualvad.vlm.judge import load_vlm_judge

SIZE = 64  # frame side in pixels (the tiny model resizes to 56 px tiles)
TRAIN_FRAMES = 96  # half with the cue
HELD_OUT_FRAMES = 48
STEPS = 60
SHARD = "shard-00000-of-00001.parquet"


def textured_frame(rng: np.random.Generator, flash: bool) -> np.ndarray:
    """uint8 (SIZE, SIZE, 3): smooth random colour texture, with ``flash`` a white disc of radius
    SIZE/3 at a random centre blended at 90%."""
    coarse = rng.integers(30, 160, size=(8, 8, 3)).astype(np.float32)
    frame = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR),
                       dtype=np.float32)
    frame += rng.normal(0, 12, size=frame.shape)
    if flash:
        y, x = np.mgrid[:SIZE, :SIZE]
        cy, cx = rng.uniform(SIZE / 4, 3 * SIZE / 4, size=2)
        disc = ((y - cy) ** 2 + (x - cx) ** 2 <= (SIZE / 3) ** 2)[..., None]
        frame = np.where(disc, 0.1 * frame + 0.9 * 255.0, frame)
    return np.clip(frame, 0, 255).astype(np.uint8)


def jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def cue_rows(count: int, split: str, seed: int) -> list[dict]:
    """Image-benchmark rows (``IMAGE_BENCH_SCHEMA``), alternating cue / no cue, with the benchmark's own
    question templates ("Explosion" as the cue frames' category)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        anomalous = index % 2 == 0
        video_id = f"{split}-{index:03d}"
        category = "Explosion" if anomalous else None
        rows.append({
            S.ROW_ID: f"{video_id}#0", S.VIDEO_ID: video_id, "frame_index": 0, "time_s": 0.0, S.SPLIT: split,
            S.VIDEO_LABEL: category or "Normal", "image": jpeg(textured_frame(rng, anomalous)),
            "anomalous": anomalous, S.CATEGORY: category, S.PSEUDO: False, S.SCORE: 0.5,
            S.CONVERSATIONS: image_conversation(row_rng(seed, video_id), anomalous, category),
        })
    return rows


def write_benchmarks(run_uri: str, rows: list[dict]) -> None:
    """``RUN/benchmarks`` as the benchmark stage publishes it (its stage record and manifest included): the
    image rows in one shard, an empty video shard."""
    def work(context) -> str:
        context.out.write_table(pa.Table.from_pylist(rows, schema=S.IMAGE_BENCH_SCHEMA), "image", SHARD)
        context.out.write_table(S.VIDEO_BENCH_SCHEMA.empty_table(), "video", SHARD)
        manifest = benchmark_manifest(context.out, 1, load_config().benchmarks)  # the stage's own counting
        context.out.write_text(json.dumps(manifest), paths.MANIFEST_FILE)
        return f"{len(rows)} cue rows"

    run_stage(Stage("benchmarks", paths.BENCHMARKS), open_run(run_uri), {"rows": len(rows)}, work,
              load_config().stages)


def test_the_tiny_vlm_learns_a_visual_cue_through_the_whole_path(ray_session, tmp_path):
    run_uri = str(tmp_path / "run")
    write_benchmarks(run_uri, cue_rows(TRAIN_FRAMES, "train", seed=1))
    config = load_config(overrides=[
        f"run={run_uri}", "finetune.model=tiny", "finetune.workers=2", "finetune.cpus_per_worker=0.5",
        "finetune.micro_batch=4", f"finetune.max_steps={STEPS}", "finetune.lr=0.003",
        "finetune.warmup_steps=5", f"finetune.report_every={STEPS}", "finetune.video_weight=0.0"])
    print(run_finetune(config))
    judge = load_vlm_judge(str(tmp_path / "run" / paths.FINETUNE / paths.FINETUNE_FINAL_DIR))
    held_out = cue_rows(HELD_OUT_FRAMES, "test", seed=2)
    images = [Image.open(io.BytesIO(row["image"])).convert("RGB") for row in held_out]
    p_yes = judge.frame_scores(images)
    labels = [row["anomalous"] for row in held_out]
    auc = roc_auc_score(labels, p_yes)
    cue, plain = float(np.mean(p_yes[0::2])), float(np.mean(p_yes[1::2]))
    print(f"held-out AUC {auc:.3f}; mean P(Yes) {cue:.3f} with the cue, {plain:.3f} without")
    assert auc >= 0.95
    assert cue > 0.5 > plain  # it answers: Yes to the cue, No without, not just a ranking
