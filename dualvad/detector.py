"""One detector, offline and online: a run's scorer and fine-tuned VLM analysing one video (plain Python).

:class:`Detector` does for one video file what the stages do for a corpus, with the settings the run was
made with (each output's ``_stage.json``, never today's defaults):

1. :class:`SegmentAnalyzer` (CPU, no VLM; serve's Analyzer): decode and cut K segments and compute their
   features exactly as ingest does (:func:`dualvad.scorer.features.ingested_video_features` with the
   recorded ``ingest.*``), score them with ``RUN/scorer/model`` (or, when the run was scored with
   ``score.scorer_run=OTHER_RUN``, that run's, as ``RUN/scores``' record says), allocate the frame budget
   as the sample stage does (:func:`dualvad.video.sampling.allocate`, recorded ``sample.*``; in a long-GOP
   video the frames moved into their segments' decode windows, ``sample.within_decode_window``), and decode
   the sampled frames at the run's ``image_size`` as JPEG bytes (the run's ``jpeg_quality``).
2. :class:`FrameJudge` (the VLM; serve's Judge): :func:`dualvad.vlm.judge.judge_frames`, the per-video
   VLM work the evaluation stage calls too: P("Yes") per frame, one 0-10 score and explanation per clip of
   ``clip_frames`` sampled frames.
3. :func:`dualvad.detection.combine`: the VLM's segment and video scores exactly as evaluate computes them
   (:mod:`dualvad.eval.scoring`), and the run's verdict (``RUN/eval/verdict.json``, fitted on validation
   videos; the scorer alone before the run is evaluated) on them and the scorer's: the answer's scores.

Options and the JSON answer are :mod:`dualvad.detector_schema`'s (:class:`DetectOptions`,
:meth:`Detection.result`), shared by ``dualvad detect`` and the HTTP API.

Frame representation: the VLM always sees the sampled frames as **JPEG bytes decoded back to RGB** (PIL,
:mod:`dualvad.video.jpeg`), encoded with the run's ``benchmarks.jpeg_quality``: the fine-tuning benchmarks
store frames as those JPEGs, the evaluation stage encodes and decodes its frames the same way, and serve
moves JPEG bytes from the Analyzer to the Judge; so one video gives the same pixels, hence the same scores,
offline and online.

Settings: ingest from ``RUN/segments``' record, sampling from ``RUN/samples``'; ``image_size``,
``clip_frames`` and ``jpeg_quality`` from ``RUN/eval``'s record (what was evaluated is what is served),
else from ``RUN/benchmarks``' (what the VLM was fine-tuned on).

The sample stage seeds the ``random`` strategy per video with ``sample.seed + crc32(video_id)``; a file
of the corpus (its path as ``RUN/segments`` records it) keeps its corpus id, a file outside the corpus
uses its file name (``os.path.basename``) as the id, unless ``video_id`` is given.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from dualvad import paths
from dualvad import schema as S
from dualvad.benchmarks.builder import read_at
from dualvad.corpus.layout import NORMAL_LABEL
from dualvad.detection import Analysis, Detection, VideoInfo, combine, load_verdict
from dualvad.detector_schema import DEFAULT_OPTIONS, DetectOptions
from dualvad.errors import MissingInputError
from dualvad.eval.verdict import Verdict
from dualvad.rundir import RunDir, local_folder, open_run
from dualvad.scorer.features import (
    SegmentFeatureExtractor,
    VideoFeatures,
    build_extractor,
    ingested_video_features,
    segment_frames,
)
from dualvad.scorer.trained import TrainedScorer, load_from_run
from dualvad.stages.recorded import recorded_ingest_settings, recorded_sample_settings
from dualvad.stages.records import read_input, read_record
from dualvad.video.config import IngestConfig
from dualvad.video.decode import VideoDecodeError
from dualvad.video.gop import GopReader
from dualvad.video.jpeg import decode_jpegs, encode_jpeg
from dualvad.video.sampling import DecodeWindow, SampleConfig, allocate, place_in_decode_windows
from dualvad.video.segments import decode_window_frames, segment_bounds, window_anchors
from dualvad.vlm.judge import Judgement, judge_frames, load_vlm_judge

__all__ = ["Analysis", "Detection", "Detector", "FrameJudge", "InvalidVideoError", "RunSettings",
           "SegmentAnalyzer", "VideoInfo", "combine", "scored_with"]


class InvalidVideoError(ValueError):
    """The file is not a usable video: not a video, corrupt or truncated, or too short for the run's K
    segments or the frame budget. The message is the reason."""


# ------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RunSettings:
    """What a run was made with, from its outputs' records."""

    ingest: IngestConfig
    sample: SampleConfig
    image_size: int  # px, longer side of the frames the VLM sees
    clip_frames: int  # sampled frames per judged clip
    jpeg_quality: int  # PIL JPEG quality of those frames

    @staticmethod
    def from_run(run: RunDir) -> RunSettings:
        """Raises MissingInputError (naming the stage to run) when an output or its record is missing."""
        ingest = recorded_ingest_settings(run)  # each raises with the fix when its output is missing
        sample = recorded_sample_settings(run)
        frames = _frame_settings(run)
        return RunSettings(ingest, sample, **frames)


def scored_with(run: RunDir) -> RunDir:
    """The run whose scorer scored ``run``: the ``score.scorer_run`` that ``RUN/scores``' record holds, else
    ``run`` itself (also when it has no scores yet)."""
    other = ((read_record(run, paths.SCORES) or {}).get("settings") or {}).get("scorer_run")
    return open_run(other) if other else run


def _frame_settings(run: RunDir) -> dict[str, int]:
    """image_size, clip_frames, jpeg_quality: each from RUN/eval's record, else RUN/benchmarks'."""
    records = [(read_record(run, output) or {}).get("settings", {})
               for output in (paths.EVAL, paths.BENCHMARKS)]
    found = {}
    for key in ("image_size", "clip_frames", "jpeg_quality"):
        values = [record[key] for record in records if key in record]
        if not values:
            raise MissingInputError(f"{run.uri}: neither {run.path(paths.EVAL)} nor "
                                    f"{run.path(paths.BENCHMARKS)} records benchmarks.{key}: "
                                    "run `dualvad build-benchmarks` first")
        found[key] = int(values[0])
    return found


# ------------------------------------------------------------------------------------------- analysis


class SegmentAnalyzer:
    """The CPU half: the run's feature extractor, scorer and sampling settings (serve's Analyzer)."""

    def __init__(self, run: RunDir, scorer: TrainedScorer, settings: RunSettings, scorer_path: str,
                 verdict: Verdict | None = None) -> None:
        self.run, self.scorer, self.settings, self.scorer_path = run, scorer, settings, scorer_path
        self.verdict = verdict if verdict is not None else load_verdict(run)  # RUN/eval's, or the scorer
        ingest = settings.ingest
        self.extractor: SegmentFeatureExtractor = build_extractor(
            ingest.feature, width=ingest.decode_width, height=ingest.decode_height, model=ingest.clip_model)
        self._corpus_ids = _corpus_ids(run)

    @classmethod
    def from_run(cls, run_uri: str) -> SegmentAnalyzer:
        run = open_run(run_uri)
        settings = RunSettings.from_run(run)
        source = scored_with(run)
        with tempfile.TemporaryDirectory(prefix="dualvad-scorer-") as local:
            scorer = load_from_run(source, local)  # fully loaded into memory: the folder can go
        return cls(run, scorer, settings, source.path(paths.SCORER, paths.SCORER_MODEL_DIR))

    def info(self) -> dict[str, Any]:
        """The run, its scorer and the settings this half runs with (JSON-ready)."""
        settings, scorer = self.settings, self.scorer
        return {
            "run": self.run.uri,
            "models": {"scorer": self.scorer_path, "scorer_kind": scorer.config.kind,
                       "categories": list(scorer.categories)},
            "verdict": self.verdict.to_dict(),
            "settings": {"segments": settings.ingest.segments, "feature": settings.ingest.feature,
                         "frames_per_segment": settings.ingest.frames_per_segment,
                         "sample": {"strategy": settings.sample.strategy, "budget": settings.sample.budget,
                                    "tau": settings.sample.tau, "floor": settings.sample.floor,
                                    "cdf_offset": settings.sample.cdf_offset, "seed": settings.sample.seed,
                                    "within_decode_window": settings.sample.within_decode_window},
                         "image_size": settings.image_size, "clip_frames": settings.clip_frames,
                         "jpeg_quality": settings.jpeg_quality},
        }

    def video_id(self, path: str) -> str:
        """The sampler's id of ``path``: its corpus id when RUN/segments holds it, else its file name."""
        return self._corpus_ids.get(os.path.realpath(path), os.path.basename(path))

    def analyze(self, path: str, options: DetectOptions = DEFAULT_OPTIONS,
                video_id: str | None = None) -> Analysis:
        """Segments, scorer scores, sampled frames and their JPEGs of the video at ``path``.

        Raises:
            InvalidVideoError: not a decodable video, or too short for K segments or the budget.
        """
        ingest, timings = self.settings.ingest, {}
        started = time.perf_counter()
        try:
            reader = GopReader(path, ingest.decode_threads, ingest.max_pixels)
        except VideoDecodeError as error:
            raise InvalidVideoError(str(error)) from error
        with reader:  # one open: the features' frames, then the sampled ones
            self.keep_window_anchors(reader)
            video = self._features(path, reader)
            timings["decode_features"] = _ms_since(started)

            started = time.perf_counter()
            scores, categories = self.scorer.predict(video.features[None])
            timings["scorer"] = _ms_since(started)

            started = time.perf_counter()
            video_id = video_id if video_id is not None else self.video_id(path)
            sample = self.sample_settings(options)
            seed = sample.seed + zlib.crc32(video_id.encode())
            try:
                allocation = allocate(sample.strategy, scores[0].astype(np.float64), video.bounds,
                                      sample.budget, tau=sample.tau, floor=sample.floor,
                                      offset=sample.cdf_offset, seed=seed)
            except ValueError as error:  # budget above the frame count
                raise InvalidVideoError(f"{path}: {error}") from error
            # placed as the sample stage places them (by RUN/segments' keyframes there, the read's here)
            allocation = place_in_decode_windows(allocation, video.bounds, video.keyframes, video.fps,
                                                 DecodeWindow.of(ingest), sample)
            timings["allocation"] = _ms_since(started)

            started = time.perf_counter()
            jpegs = self._jpegs(reader, allocation.frames)
            timings["frames"] = _ms_since(started)
        category, probability = self.category(categories)
        return Analysis(VideoInfo(video.num_frames, video.fps, video.num_frames / video.fps),
                        np.asarray(video.bounds, dtype=np.int64), scores[0].astype(np.float32),
                        category, allocation.frames.astype(np.int64), jpegs, timings,
                        video_id, sample.strategy, probability, self.verdict, reader.frames_decoded)

    def keep_window_anchors(self, reader: GopReader) -> None:
        """Ask ``reader`` to hold, at the VLM's size, the window anchors the feature pass decodes (the
        frames :func:`within_decode_windows` moves sampled frames onto first), so that those sampled frames
        are not decoded a second time from their keyframe. Nothing to hold when frames cannot move."""
        ingest, sample = self.settings.ingest, self.settings.sample
        pairs = DecodeWindow.of(ingest).anchors
        window = decode_window_frames(ingest.decode_window_s, reader.fps)
        if not (sample.within_decode_window and sample.window_anchors and ingest.snap_to_keyframes
                and window > 0 and len(reader) >= ingest.segments):  # too short: the features say so
            return
        bounds = segment_bounds(len(reader), ingest.segments)
        decoded = np.concatenate(segment_frames(bounds, pairs, len(reader), reader.keyframes, window))
        anchors = np.concatenate([window_anchors(int(start), int(end), reader.keyframes, window, pairs)
                                  for start, end in bounds])
        reader.keep(np.intersect1d(anchors, decoded), self.settings.image_size)

    def _features(self, path: str, reader: GopReader) -> VideoFeatures:
        """The segments' features as ingest computed them (the run's ``ingest.*``), read from ``reader``."""
        ingest = self.settings.ingest
        try:
            return ingested_video_features(path, self.extractor, ingest, reader=reader)
        except VideoDecodeError as error:
            raise InvalidVideoError(str(error)) from error
        except ValueError as error:  # fewer frames than K segments
            raise InvalidVideoError(f"{path}: {error}: the run's scorer reads {ingest.segments} segments per "
                                    f"video, so send a video of at least {ingest.segments} frames") from error

    def sample_settings(self, options: DetectOptions) -> SampleConfig:
        """The run's ``sample.*`` with the options' budget, strategy and tau where set."""
        recorded = self.settings.sample
        return dataclasses.replace(recorded, strategy=options.strategy or recorded.strategy,
                                   budget=options.budget or recorded.budget,
                                   tau=recorded.tau if options.tau is None else float(options.tau))

    def _jpegs(self, reader: GopReader, frames: np.ndarray) -> list[bytes]:
        """The sampled frames at the run's image size, as the benchmarks and evaluate decode them
        (:func:`dualvad.benchmarks.builder.read_at`), JPEG-encoded."""
        try:
            decoded = read_at(reader, frames, self.settings.image_size)
        except VideoDecodeError as error:  # e.g. truncated after the frames the features read
            raise InvalidVideoError(str(error)) from error
        return [encode_jpeg(frame, self.settings.jpeg_quality) for frame in decoded]

    def category(self, probabilities: np.ndarray | None) -> tuple[str | None, float | None]:
        """The head's most probable anomaly category and its probability (softmax over every category,
        Normal included), whatever the verdict; ``(None, None)`` for a scorer without a head (MIL)."""
        anomalies = [i for i, name in enumerate(self.scorer.categories) if name != NORMAL_LABEL]
        if probabilities is None or not anomalies:
            return None, None
        # the answer names a kind of anomaly, with how sure the head is of it (low when it says Normal)
        best = max(anomalies, key=lambda i: float(probabilities[0][i]))  # the first of equals
        return self.scorer.categories[best], float(probabilities[0][best])


def _corpus_ids(run: RunDir) -> dict[str, str]:
    """Real path -> corpus video id of every ingested video."""
    table = read_input(run, paths.SEGMENTS, columns=[S.VIDEO_ID, S.VIDEO_PATH])
    if table is None:
        return {}
    pairs = set(zip(table[S.VIDEO_PATH].to_pylist(), table[S.VIDEO_ID].to_pylist(), strict=True))
    return {os.path.realpath(path): video_id for path, video_id in pairs}


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


# ---------------------------------------------------------------------------------------------- VLM


class FrameJudge:
    """The VLM half: a run's fine-tuned VLM (or ``vlm``, a folder / hub id) as a ``VLMJudge`` (serve's
    Judge). On ``cuda`` the model runs in bfloat16, as the evaluation stage runs it; else float32."""

    def __init__(self, judge: Any, clip_frames: int, vlm_path: str) -> None:
        self.vlm, self.clip_frames, self.vlm_path = judge, clip_frames, vlm_path

    @classmethod
    def from_run(cls, run_uri: str, vlm: str | None = None, device: str = "cpu", batch_size: int = 8,
                 max_new_tokens: int = 24) -> FrameJudge:
        run = open_run(run_uri)
        clip_frames = _frame_settings(run)["clip_frames"]
        with tempfile.TemporaryDirectory(prefix="dualvad-vlm-") as scratch:
            path = vlm if vlm is not None else _run_vlm(run, scratch)
            judge = load_vlm_judge(path, device, batch_size, max_new_tokens)
        return cls(judge, clip_frames, vlm if vlm is not None else run.path(paths.FINETUNE,
                                                                            paths.FINETUNE_FINAL_DIR))

    def judge(self, jpegs: list[bytes], explain: bool = True) -> Judgement:
        """The VLM's answers about one video's sampled frames (JPEG bytes, in frame order)."""
        return judge_frames(self.vlm, decode_jpegs(jpegs), self.clip_frames, explain)

    def judge_many(self, requests: list[tuple[list[bytes], bool]]) -> list[Judgement]:
        """:meth:`judge` for several videos at once (``(jpegs, explain)`` each): every video's frames go
        through the VLM's frame batches together, so concurrent requests share forward passes; clips are
        judged per video. Each Judgement's ``frames_vlm`` time is the whole shared pass."""
        images = [decode_jpegs(jpegs) for jpegs, _ in requests]
        started = time.perf_counter()
        flat = np.asarray(self.vlm.frame_scores([image for video in images for image in video]), np.float32)
        shared_ms = _ms_since(started)
        ends = np.cumsum([len(video) for video in images])
        scores = np.split(flat, ends[:-1])
        judgements = []
        for video, video_scores, (_, explain) in zip(images, scores, requests, strict=True):
            judgement = judge_frames(self.vlm, video, self.clip_frames, explain, frame_scores=video_scores)
            judgement.timings_ms["frames_vlm"] = shared_ms
            judgements.append(judgement)
        return judgements

    def info(self) -> dict[str, Any]:
        """The VLM this half serves (JSON-ready)."""
        model_config = getattr(self.vlm.model, "config", None)
        return {"models": {"vlm": self.vlm_path,
                           "vlm_name": getattr(model_config, "_name_or_path", None) or self.vlm_path}}


def _run_vlm(run: RunDir, scratch: str) -> str:
    """RUN/finetune/final as a local folder (copied into ``scratch`` when the run is remote)."""
    if not run.exists(paths.FINETUNE, paths.FINETUNE_FINAL_DIR, "config.json"):
        raise MissingInputError(f"{run.path(paths.FINETUNE, paths.FINETUNE_FINAL_DIR)} holds no model: run "
                                "`dualvad finetune` first, or pass vlm= a model folder or hub id")
    return local_folder(run.fs, run.path(paths.FINETUNE, paths.FINETUNE_FINAL_DIR), scratch)


class Detector:
    """A run's scorer and VLM analysing one video (module docstring): a :class:`SegmentAnalyzer` and a
    :class:`FrameJudge`, each loadable alone (``Detector.analyzer`` / ``Detector.frame_judge``)."""

    def __init__(self, analyzer: SegmentAnalyzer, frame_judge: FrameJudge) -> None:
        self.analyzer, self.frame_judge = analyzer, frame_judge

    @classmethod
    def from_run(cls, run_uri: str, vlm: str | None = None, device: str = "cpu", batch_size: int = 8,
                 max_new_tokens: int = 24) -> Detector:
        """``vlm`` None: RUN/finetune/final; else a model folder or hub id (e.g. ``eval.model``'s)."""
        return cls(SegmentAnalyzer.from_run(run_uri),
                   FrameJudge.from_run(run_uri, vlm, device, batch_size, max_new_tokens))

    def analyze(self, path: str, options: DetectOptions = DEFAULT_OPTIONS,
                video_id: str | None = None) -> Analysis:
        return self.analyzer.analyze(path, options, video_id)

    def judge(self, jpegs: list[bytes], explain: bool = True) -> Judgement:
        return self.frame_judge.judge(jpegs, explain)

    def detect(self, path: str, options: DetectOptions = DEFAULT_OPTIONS,
               video_id: str | None = None) -> Detection:
        analysis = self.analyze(path, options, video_id)
        return combine(analysis, self.judge(analysis.jpegs, options.explain), options.threshold)

    def models(self) -> dict[str, str | None]:
        """``{"run", "vlm"}``: the run and the VLM folder or hub id, as each answer names them."""
        return {"run": self.analyzer.run.uri, "vlm": self.frame_judge.vlm_path}

    def info(self) -> dict[str, Any]:
        """The models and settings this detector runs (JSON-ready): the two halves' ``info`` merged."""
        analyzer, judge = self.analyzer.info(), self.frame_judge.info()
        return {**analyzer, "models": {**analyzer["models"], **judge["models"]}}
