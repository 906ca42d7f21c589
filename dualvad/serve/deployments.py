"""The two model deployments behind the Api: :class:`Analyzer` (CPU: decode, features, scorer, allocation)
and :class:`Judge` (the VLM, batched across concurrent requests with ``@serve.batch``).

They hold the two halves of :class:`dualvad.detector.Detector` (:class:`~dualvad.detector.SegmentAnalyzer`,
:class:`~dualvad.detector.FrameJudge`), so the service scores a video exactly as the offline stages do.
The Analyzer hands the Judge JPEG bytes (``Analysis.jpegs``), never arrays of pixels as Python lists.
Errors the client caused are :class:`~dualvad.serve.errors.ServeError`; anything else propagates and the Api
answers 500 with the request id, which both logs carry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import shutil
import tempfile
import time
from collections import Counter
from typing import Any

from ray import serve
from ray.serve import metrics

from dualvad import paths
from dualvad.detector import Analysis, FrameJudge, InvalidVideoError, SegmentAnalyzer
from dualvad.detector_schema import DetectOptions
from dualvad.rundir import open_run
from dualvad.serve.errors import ServeError
from dualvad.serve.settings import AppArgs
from dualvad.storage import resolve
from dualvad.video.decode import VideoDecodeError, open_video
from dualvad.vlm.judge import Judgement

log = logging.getLogger("ray.serve")


def vlm_path(args: AppArgs) -> str:
    """The VLM the Judge serves: ``args.vlm`` or the run's fine-tuned export."""
    if args.vlm:
        return args.vlm
    return open_run(args.run).path(paths.FINETUNE, paths.FINETUNE_FINAL_DIR)


# Code defaults fit a 2-CPU laptop with the Api and Streams (0.25 + 2 x 0.5 + 0.5 + 0.25 = 2 CPUs reserved at
# most); a cluster
# sizes them in configs/serve/cluster.yaml. num_cpus is Ray's reservation, not a thread limit.
@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=2, max_queued_requests=32)
class Analyzer:
    """Decodes one video (upload bytes or a URI the Api has already checked), scores its segments and picks
    the frames the Judge sees."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = AppArgs(**args)
        self.analyzer = SegmentAnalyzer.from_run(self.args.run)

    def analyze(self, request_id: str, options: DetectOptions, data: bytes | None = None,
                uri: str | None = None) -> Analysis:
        """The Analysis of the uploaded ``data`` or of the file at ``uri``; the temp copy is always deleted.

        Raises:
            ServeError: 422 when the file is not a decodable video, too long, or shorter than the budget.
        """
        scratch = tempfile.mkdtemp(prefix="dualvad-serve-")
        try:
            path = _local_copy(scratch, data, uri)
            self._check_length(path, options)
            return self.analyzer.analyze(path, options)
        except (InvalidVideoError, VideoDecodeError) as error:
            raise ServeError(422, "invalid_video", _without(str(error), scratch, uri)) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        return self.analyzer.info()

    def _check_length(self, path: str, options: DetectOptions) -> None:
        """422 before any feature work when the container says the video is too long or too short."""
        reader = open_video(path, max_pixels=self.analyzer.settings.ingest.max_pixels)
        frames, fps = len(reader), float(reader.get_avg_fps())
        duration = frames / fps if fps > 0 else 0.0
        if duration > self.args.max_duration_s:
            raise ServeError(422, "video_too_long", f"the video lasts {duration:.1f} s, longer than the "
                                                    f"limit of {self.args.max_duration_s:g} s")
        budget = self.analyzer.sample_settings(options).budget
        if frames < budget:
            raise ServeError(422, "video_too_short", f"the video has {frames} frames, fewer than the "
                                                     f"frame budget {budget}; send a longer video or a "
                                                     "lower budget")


def _local_copy(scratch: str, data: bytes | None, uri: str | None) -> str:
    """A local path decord can open: the upload written into ``scratch``, a local ``uri`` itself, or a
    pyarrow URI copied into ``scratch``."""
    if data is not None:
        path = os.path.join(scratch, "upload.mp4")
        with open(path, "wb") as file:
            file.write(data)
        return path
    if uri is None:
        raise ValueError("analyze needs the upload's bytes or a uri")
    if "://" not in uri:
        return uri
    filesystem, inner = resolve(uri)
    path = os.path.join(scratch, posixpath.basename(inner) or "video")
    with filesystem.open_input_stream(inner) as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


def _without(message: str, scratch: str, uri: str | None) -> str:
    """The decoder's reason with the replica's temp path replaced by what the client sent."""
    return message.replace(os.path.join(scratch, "upload.mp4"), uri or "the upload").replace(scratch, "")


BATCH_SIZE_METRIC = "dualvad_judge_batch_size"  # Prometheus: ray_dualvad_judge_batch_size_{bucket,count,sum}
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]  # requests per batch (upper bounds)


class BatchSizes:
    """The sizes of the Judge's batches: recorded in a Serve metric (a histogram that Prometheus collects
    from every replica, tagged with the deployment and replica), and counted here for this replica's
    ``/v1/info``."""

    def __init__(self, histogram: Any = None) -> None:
        self.histogram = histogram if histogram is not None else metrics.Histogram(
            BATCH_SIZE_METRIC, description="requests the Judge answered in one batch (one shared VLM pass)",
            boundaries=BATCH_SIZE_BUCKETS)
        self.counts: Counter[int] = Counter()

    def record(self, size: int) -> None:
        self.histogram.observe(size)
        self.counts[size] += 1

    def seen(self) -> dict[str, int]:
        """This replica's batches so far, ``{size: count}`` (JSON keys: strings)."""
        return {str(size): count for size, count in sorted(self.counts.items())}


@serve.deployment(ray_actor_options={"num_cpus": 0.5, "num_gpus": 0}, max_ongoing_requests=32)
class Judge:
    """The VLM: P(Yes) per frame, clip scores and explanations. Concurrent requests are batched
    (``@serve.batch``): one call of :meth:`_judge_batch` answers every request that arrived within
    ``batch_wait_timeout_s``, up to ``max_batch_size`` of them. Batch sizes: :class:`BatchSizes`."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = AppArgs(**args)
        self.model = vlm_path(self.args)
        self.frame_judge = FrameJudge.from_run(self.args.run, vlm=self.model, device=self.args.device,
                                               batch_size=self.args.vlm_batch_size,
                                               max_new_tokens=self.args.max_new_tokens)
        self._judge_batch.set_max_batch_size(self.args.max_batch_size)
        self._judge_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self.batch_sizes = BatchSizes()

    async def judge(self, request_id: str, jpegs: list[bytes], explain: bool) -> Judgement:
        """The Judgement of one request's frames (waits for its batch)."""
        started = time.perf_counter()
        judgement = await self._judge_batch((jpegs, explain))
        log.info("judge: request %s, %d frames, %.0f ms", request_id, len(jpegs),
                 (time.perf_counter() - started) * 1000)
        return judgement

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def _judge_batch(self, requests: list[tuple[list[bytes], bool]]) -> list[Judgement]:
        self.batch_sizes.record(len(requests))
        # The VLM blocks for seconds on CPU: off the event loop, so requests keep arriving for the next batch.
        return await asyncio.to_thread(self._judge_all, requests)

    def _judge_all(self, requests: list[tuple[list[bytes], bool]]) -> list[Judgement]:
        return self.frame_judge.judge_many(requests)  # every request's frames in shared VLM batches

    def info(self) -> dict[str, Any]:
        """The VLM, the batching settings and every batch size this replica has seen ({size: count})."""
        return {"vlm": self.model, **self.frame_judge.info()["models"], "device": self.args.device,
                "max_batch_size": self.args.max_batch_size,
                "batch_wait_timeout_s": self.args.batch_wait_timeout_s,
                "batch_sizes": self.batch_sizes.seen()}

