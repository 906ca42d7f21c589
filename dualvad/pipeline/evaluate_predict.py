"""The VLM's predictions for the evaluate stage (:mod:`dualvad.pipeline.evaluate`): each test video's sampled
frames and clips judged in Ray Data actors (:class:`EvalWorker`), written per model as the stage goes."""

from __future__ import annotations

import io
import logging
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from PIL import Image

from dualvad import console, paths
from dualvad import schema as S
from dualvad.config import DualVADConfig
from dualvad.eval.scoring import top_positions
from dualvad.files import safe_name
from dualvad.pipeline.evaluate_models import ModelSpec
from dualvad.pipeline.runtime import actor_pool, ensure_ray
from dualvad.rundir import local_folder, open_run
from dualvad.stages.runner import StageContext

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 192  # px, longer side of report thumbnails


def model_predictions(context: StageContext, config: DualVADConfig, spec: ModelSpec, rows: list[dict],
                 test_ids: set[str], unserved: dict[str, str]) -> list[dict]:
    """The prediction rows of ``spec`` on ``rows``, plus a failure row for every test video without frames;
    kept in the staging folder, so an interrupted evaluation keeps the models it finished."""
    parts = (paths.PREDICTIONS_DIR, f"{prediction_name(spec.name)}.parquet")
    if context.out.exists(*parts):
        log.info("evaluate: %s already evaluated by the interrupted run", spec.name)
        return pq.read_table(context.out.path(*parts), filesystem=context.out.fs).to_pylist()
    predictions = _infer(config, spec, rows) if rows else []
    served = {row[S.VIDEO_ID] for row in rows}
    for video_id in sorted(test_ids - served):
        reason = unserved.get(video_id, f"{video_id}: not in {context.run.path(paths.SAMPLES)} (see its "
                                        f"{paths.FAILURES_FILE})")
        predictions.append({S.VIDEO_ID: video_id, S.MODEL: spec.name, S.STRATEGY: spec.strategy,
                            S.ERROR: reason})
    context.out.write_table(pa.Table.from_pylist(predictions, schema=S.PREDICTIONS_SCHEMA), *parts)
    return predictions


def _infer(config: DualVADConfig, spec: ModelSpec, rows: list[dict]) -> list[dict]:
    """Ray Data batch inference: one video per call to an :class:`EvalWorker` actor."""
    ensure_ray(config.ray)
    settings = config.eval
    worker_settings = {"image_size": config.benchmarks.image_size,
                       "clip_frames": config.benchmarks.clip_frames,
                       "jpeg_quality": config.benchmarks.jpeg_quality,
                       "batch_size": settings.batch_size, "max_new_tokens": settings.max_new_tokens,
                       "thumbnails": settings.thumbnails, "use_gpu": settings.use_gpu}
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        EvalWorker,
        fn_constructor_kwargs={"spec": spec, "settings": worker_settings},
        batch_size=1,
        batch_format="pyarrow",
        compute=actor_pool(settings.workers, len(rows)),
        num_cpus=settings.cpus_per_worker,
        num_gpus=1 if settings.use_gpu else 0,
    )
    predictions: list[dict] = []
    with console.bar(f"evaluate {spec.name}", len(rows), "videos") as advance:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            predictions += batch.to_pylist()
            log.info("evaluate: %s %d/%d videos", spec.name, len(predictions), len(rows))
            advance(batch.num_rows)
    return sorted(predictions, key=lambda row: row[S.VIDEO_ID])


class EvalWorker:
    """Ray Data actor: holds one VLM; answers the benchmark questions about one video's sampled frames."""

    def __init__(self, spec: ModelSpec, settings: dict[str, Any]) -> None:
        from dualvad.vlm.judge import load_vlm_judge

        self.spec, self.settings = spec, settings
        self._local = tempfile.TemporaryDirectory(prefix="dualvad-eval-")
        path = _local_model(spec, self._local.name)
        self.judge = load_vlm_judge(path, "cuda" if settings["use_gpu"] else "cpu", settings["batch_size"],
                                    settings["max_new_tokens"])

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self._evaluate(row) for row in batch.to_pylist()],
                                    schema=S.PREDICTIONS_SCHEMA)

    def _evaluate(self, row: dict) -> dict:
        from dualvad.benchmarks.builder import SampledVideo, decode_selected
        from dualvad.video.decode import VideoDecodeError
        from dualvad.video.jpeg import decode_jpegs, encode_jpeg
        from dualvad.vlm.judge import judge_frames

        video = SampledVideo.from_row(row)
        base = {S.VIDEO_ID: video.video_id, S.MODEL: self.spec.name, S.STRATEGY: self.spec.strategy,
                S.FRAMES: list(video.frames)}
        try:
            frames = decode_selected(video, self.settings["image_size"])
        except VideoDecodeError as error:  # a recorded failure: the other videos go on
            return {**base, S.ERROR: f"{video.path}: {error}"}
        # JPEG round trip at the benchmarks' quality: the frames the VLM was fine-tuned on, and the ones
        # the online detector sends its Judge, so both score the same pixels.
        images = decode_jpegs([encode_jpeg(frame, self.settings["jpeg_quality"]) for frame in frames])
        judgement = judge_frames(self.judge, images, self.settings["clip_frames"])
        best = int(np.argmax(judgement.clip_scores))
        top = top_positions(judgement.frame_scores, self.settings["thumbnails"])
        return {**base, S.FRAME_SCORES: judgement.frame_scores.tolist(), S.CLIP_STARTS: judgement.clip_starts,
                S.CLIP_SCORES: judgement.clip_scores, S.EXPLANATION: judgement.explanations[best],
                S.THUMB_FRAMES: [video.frames[i] for i in top],
                S.THUMB_JPEGS: [_thumbnail_jpeg(images[i]) for i in top], S.ERROR: None}


def _local_model(spec: ModelSpec, scratch: str) -> str:
    """A path ``from_pretrained`` can read: the folder itself when local, else a copy in ``scratch``."""
    if spec.run_uri is None:  # a local folder or a hub id
        return spec.path
    return local_folder(open_run(spec.run_uri).fs, spec.path, scratch)


def _thumbnail_jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()




def prediction_name(name: str) -> str:
    """A model name as its predictions' file stem: ``vlm/focused`` -> ``vlm-focused``."""
    return safe_name(name, "-", "model")
