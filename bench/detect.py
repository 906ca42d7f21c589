"""What detecting one video costs in decoding, against ffmpeg's full decode and the naive baseline (issue 30).

On the UCF-like corpus (:mod:`dualvad.corpus.ucf_like`; ``--corpus short`` for the older one, see
``bench/common.py``), with a run prepared on it (ingest, scorer, scores, samples, benchmarks' records:
``bench/common.py``'s ``detect_run``), for each video, one after the other in this process:

- **ffmpeg**: ``ffmpeg -threads 1 -i VIDEO -f null -``, every frame decoded once (the floor of a full decode);
- **naive**: ``bench/serve.py``'s baseline without the VLM: every frame decoded at the file's size and
  converted to RGB (PyAV, one thread), ``--budget`` uniformly spaced ones become JPEGs;
- **before** (``--decord``): the detector's decoding as it was before issue 30 (re-done here with decord):
  each segment's pairs spread over the segment (the sub-interval anchors), the sampled frames decoded in a
  second open;
- **spread**, **window** and **anchors**: the detector's decoding as it is, what
  :meth:`dualvad.detector.SegmentAnalyzer.analyze` does but the scorer and the allocation (one
  :class:`~dualvad.video.gop.GopReader` open; in long GOPs each segment's pairs within
  ``ingest.decode_window_s`` after its keyframe; non-reference frames that are not wanted skipped; the
  features, then the sampled frames and their JPEGs), side by side: *spread* with the strategy's frames
  where it put them (``sample.within_decode_window=false``); *window* with those deeper than the window
  into their GOP moved into their segment's decode window, spread over its free frames (the placement of
  2026-12-07, ``within_decode_windows(..., anchors=0)``), the sampled frames decoded in a second walk;
  *anchors* with them moved onto the window's anchors first and those anchors kept from the features' walk
  (:meth:`~dualvad.detector.SegmentAnalyzer.keep_window_anchors`; the default, checked equal to
  ``analyze``'s frames when the run samples so); and
  **analyze**, the whole of ``analyze`` with the run's settings (the scorer, a small transformer on 2 torch
  threads, included).

Costs are **CPU-seconds of this process** (``time.process_time``, every thread) and, for ffmpeg, of the
child (``resource.getrusage(RUSAGE_CHILDREN)``): the machine is shared, and CPU time counts only this
work; with ``--repeat N`` every way is timed N times, one round after another, and its least CPU-seconds
kept. Wall seconds of *anchors* are printed too, as a secondary figure. Frames decoded: ffmpeg and naive
decode every frame; *before* is the GOP prefixes its frames need (from each GOP's keyframe to its last
wanted frame; decord decodes them in order, so this is a floor), *spread*, *window* and *anchors* the frames
the decoder returned (in brackets: those of them decoded for the sampled frames, after the features).

Targets (issue 30): the detector's decoding (decode, features, sampled frames: *anchors*, the default)
/ ffmpeg <= 1/3 on a 320x240 video, <= 1/5 on a 1280x720 one.

    python bench/detect.py                 # the UCF-like corpus (generated once: see bench/common.py)
    python bench/detect.py --scale 0.25    # lengths / 4
    python bench/detect.py --decord        # with *before* (decord)
    python bench/detect.py --image-size 448  # sampled frames at InternVL's size
    python bench/detect.py --repeat 3      # each way's least CPU of 3
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from serve import naive_frames  # bench/serve.py's baseline

from common import detect_run, ffmpeg_binary, ucf_like_arguments, ucf_like_corpus, ucf_like_spec


@dataclass(frozen=True)
class Row:
    """One video's costs: CPU-seconds and frames decoded of each way."""

    name: str
    size: tuple[int, int]
    frames: int
    keyframes: int
    cpu: dict[str, float]  # way -> CPU-seconds
    decoded: dict[str, int]  # way -> frames decoded
    after_wall: float  # s


WAYS = ("ffmpeg", "naive", "before", "spread", "window", "anchors", "analyze")
PLACED = ("spread", "window", "anchors")  # the detector's decoding, three placements of the sampled frames


def main() -> None:
    args = _args()
    corpus = ucf_like_corpus(ucf_like_spec(args)) if args.corpus == "ucf-like" else Path(args.corpus_path)
    config = detect_run(f"detect-{corpus.parent.name}", corpus, args.budget)
    from dualvad.detector import SegmentAnalyzer

    analyzer = SegmentAnalyzer.from_run(config.run)
    if args.image_size:  # the sampled frames' size, as a run made with benchmarks.image_size=N decodes them
        analyzer.settings = dataclasses.replace(analyzer.settings, image_size=args.image_size)
    videos = sorted(str(p) for p in Path(corpus, "videos").rglob("*.mp4"))[: args.limit or None]
    rows = [_measure(analyzer, path, args.budget, args.decord, args.repeat) for path in videos]
    _print(rows, args, analyzer.settings.image_size)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ucf_like_arguments(parser)
    parser.add_argument("--corpus-path", help="with --corpus short: a corpus folder to time instead")
    parser.add_argument("--budget", type=int, default=16, help="frames sampled per video")
    parser.add_argument("--limit", type=int, default=0, help="time only the first N videos (0: all)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time every way this many times per video and keep its least CPU (the machine's "
                             "noise only ever adds time)")
    parser.add_argument("--image-size", type=int, default=0,
                        help="decode the sampled frames with this longer side, px (0: the bench run's "
                             "benchmarks.image_size; InternVL's is 448)")
    parser.add_argument("--decord", action="store_true",
                        help="time *before* too (decord, as before issue 30: ~3 s of CPU a video)")
    args = parser.parse_args()
    if args.corpus == "short" and not args.corpus_path:
        parser.error("--corpus short needs --corpus-path FOLDER (a corpus with videos/ and annotations/)")
    return args


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(analyzer, path: str, budget: int, decord: bool, repeat: int) -> Row:
    from dualvad.video.decode import VideoDecodeError
    from dualvad.video.gop import GopReader

    cpu, decoded = {}, {}
    for _ in range(repeat):  # every way once a round, so a busy moment of the machine hits them alike
        spread = _round(analyzer, path, budget, cpu, decoded)

    decoded["before"], cpu["before"] = -1, float("nan")
    if decord:
        started = time.process_time()
        try:
            decoded["before"] = _before(analyzer, path, spread)
            cpu["before"] = time.process_time() - started
        except VideoDecodeError as error:  # decord gives up on some long B-frame files (decisions.md)
            print(f"before: {error}", flush=True)

    with GopReader(path) as reader:
        frames, keyframes, size = len(reader), len(reader.keyframes), (reader.width, reader.height)
    decoded["ffmpeg"] = decoded["naive"] = frames
    row = Row(Path(path).name, size, frames, keyframes, cpu, decoded, cpu["anchors_wall"])
    print(_line(row), flush=True)
    return row


def _round(analyzer, path: str, budget: int, cpu: dict[str, float], decoded: dict[str, int]) -> np.ndarray:
    """Time every way once on ``path``; ``cpu`` keeps each way's least CPU-seconds over the rounds. Returns
    the strategy's frames where it put them (*spread*)."""
    from dualvad.detector_schema import DetectOptions

    def least(way: str, seconds: float) -> None:
        cpu[way] = min(cpu.get(way, seconds), seconds)

    started = _children_cpu()
    subprocess.run([ffmpeg_binary(), "-v", "error", "-threads", "1", "-i", path, "-f", "null", "-"],
                   check=True)
    least("ffmpeg", _children_cpu() - started)

    settings = analyzer.settings
    started = time.process_time()
    naive_frames(path, budget, settings.image_size, settings.jpeg_quality)
    least("naive", time.process_time() - started)

    started = time.process_time()
    analysis = analyzer.analyze(path, DetectOptions(budget=budget))
    least("analyze", time.process_time() - started)
    decoded["analyze"] = analysis.frames_decoded

    spread = _spread_frames(analyzer, analysis, budget)
    placed = {"spread": spread, **_window_frames(analyzer, path, analysis, spread)}
    for way, frames in placed.items():
        started, wall = time.process_time(), time.perf_counter()
        decoded[way], decoded[f"{way}_sampled"] = _after(analyzer, path, frames, keep=way == "anchors")
        least(way, time.process_time() - started)
        least(f"{way}_wall", time.perf_counter() - wall)
    return spread


def _spread_frames(analyzer, analysis, budget: int) -> np.ndarray:
    """The frames the run's strategy picks where it puts them (``sample.within_decode_window`` off): the
    allocation of ``analysis``' scores, as ``analyze`` computes it."""
    import zlib

    from dualvad.detector_schema import DetectOptions
    from dualvad.video.sampling import allocate

    sample = analyzer.sample_settings(DetectOptions(budget=budget))
    seed = sample.seed + zlib.crc32(analysis.video_id.encode())
    scores = analysis.segment_scores.astype(np.float64)
    return allocate(sample.strategy, scores, analysis.bounds, sample.budget,
                    tau=sample.tau, floor=sample.floor, offset=sample.cdf_offset, seed=seed).frames


def _window_frames(analyzer, path: str, analysis, spread: np.ndarray) -> dict[str, np.ndarray]:
    """``spread`` moved into their segments' decode windows (``sample.within_decode_window`` on), by the
    video's keyframes as the feature pass reads them: *window*, spread over the windows' free frames (the
    placement before the anchors), and *anchors*, onto the windows' anchors first (the default: checked
    equal to ``analyze``'s own frames when the run samples so)."""
    from dualvad.video.gop import GopReader
    from dualvad.video.sampling import Allocation, DecodeWindow, within_decode_windows
    from dualvad.video.segments import decode_window_frames

    with GopReader(path) as reader:
        keyframes, fps = reader.keyframes, reader.fps
    ingest = analyzer.settings.ingest
    window = decode_window_frames(ingest.decode_window_s, fps)
    allocation = Allocation(spread, np.zeros(len(analysis.bounds), np.int64))
    placed = {way: within_decode_windows(allocation, analysis.bounds, keyframes, window, anchors).frames
              for way, anchors in (("window", 0), ("anchors", DecodeWindow.of(ingest).anchors))}
    expected = analysis.frames if analyzer.settings.sample.within_decode_window else spread
    if not np.array_equal(placed["anchors"], expected):
        raise AssertionError(f"{path}: the frames placed here differ from analyze's")
    return placed


def _after(analyzer, path: str, sampled: np.ndarray, keep: bool) -> tuple[int, int]:
    """The decoding of ``analyze`` alone: the features and the sampled frames' JPEGs, from one reader, with
    the functions ``analyze`` calls (``keep``: the window anchors kept from the features' walk, as
    ``analyze`` does). Returns the frames the decoder returned: in all, and for the sampled frames (after
    the features)."""
    from dualvad.benchmarks.builder import read_at
    from dualvad.scorer.features import ingested_video_features
    from dualvad.video.gop import GopReader
    from dualvad.video.jpeg import encode_jpeg

    ingest, settings = analyzer.settings.ingest, analyzer.settings
    with GopReader(path, ingest.decode_threads, ingest.max_pixels) as reader:
        if keep:
            analyzer.keep_window_anchors(reader)
        ingested_video_features(path, analyzer.extractor, ingest, reader=reader)
        features = reader.frames_decoded
        for frame in read_at(reader, sampled, settings.image_size):
            encode_jpeg(frame, settings.jpeg_quality)
        return reader.frames_decoded, reader.frames_decoded - features


def _before(analyzer, path: str, sampled: np.ndarray) -> int:
    """The detector's decoding before issue 30, with decord: spread pairs, then the sampled frames in a
    second open (at the run's image size). Returns the frames of the GOP prefixes it decodes (a floor)."""
    from dualvad.scorer.features import pair_indices
    from dualvad.video.decode import open_video, read_frames
    from dualvad.video.gop import frame_size
    from dualvad.video.segments import pairs_per_segment, segment_bounds

    ingest = analyzer.settings.ingest
    width, height = analyzer.extractor.decode_size
    reader = open_video(path, width=width, height=height)
    keyframes = np.asarray(reader.get_key_indices(), dtype=np.int64)
    pairs = pairs_per_segment(ingest.frames_per_segment)
    wanted = [pair_indices(int(s), int(e), pairs, len(reader), keyframes)
              for s, e in segment_bounds(len(reader), ingest.segments)]
    frames = np.stack([read_frames(reader, w, path)[np.arange(2 * pairs) % len(w)] for w in wanted])
    analyzer.extractor(frames)
    full = open_video(path, max_pixels=None)
    size = frame_size(*full[0].shape[1::-1], analyzer.settings.image_size)
    sampled_reader = open_video(path, width=size[0], height=size[1], max_pixels=None)
    read_frames(sampled_reader, sampled, path)
    return prefix_frames(np.concatenate(wanted), keyframes) + prefix_frames(sampled, keyframes) + 1


def prefix_frames(wanted: np.ndarray, keyframes: np.ndarray) -> int:
    """Frames from each GOP's keyframe to the last wanted frame in it, summed over the GOPs holding one."""
    gop = np.searchsorted(keyframes, wanted, side="right") - 1
    last = {}
    for g, frame in zip(gop.tolist(), wanted.tolist(), strict=True):
        last[g] = max(last.get(g, frame), frame)
    return sum(frame - (int(keyframes[g]) if g >= 0 else 0) + 1 for g, frame in last.items())


def _line(row: Row) -> str:
    cpu, decoded = row.cpu, row.decoded
    before = decoded["before"] if decoded["before"] >= 0 else "-"  # - : not timed (no --decord), or failed
    return (f"| {row.name} | {row.size[0]}x{row.size[1]} | {row.frames} | {row.keyframes} | "
            + " | ".join(f"{cpu[w]:.2f}" for w in WAYS) + f" | {before} | "
            + " | ".join(f"{decoded[w]} ({decoded[f'{w}_sampled']})" for w in PLACED) + " | "
            + " | ".join(f"{cpu[w] / cpu['ffmpeg']:.2f}" for w in PLACED)
            + f" | {cpu['anchors'] / cpu['naive']:.2f} | {row.after_wall:.2f} |")


def _print(rows: list[Row], args: argparse.Namespace, size: int) -> None:
    print(f"\n## Decoding per video, CPU-seconds of this process (budget {args.budget}, sampled frames at "
          f"{size} px)\n")
    print("| video | size | frames | keyframes | ffmpeg s | naive s | before s | spread s | window s "
          "| anchors s | analyze s | before decoded (floor) | spread decoded (sampled) "
          "| window decoded (sampled) | anchors decoded (sampled) | spread/ffmpeg | window/ffmpeg "
          "| anchors/ffmpeg | anchors/naive | anchors wall s |")
    print("| --- " * 20 + "|")
    for row in rows:
        print(_line(row))
    print()
    for size in sorted({row.size for row in rows}):
        group = [row for row in rows if row.size == size]
        print(_summary(size, group))


def _summary(size: tuple[int, int], group: list[Row]) -> str:
    """One line per frame size: each way's CPU over ffmpeg's (corpus sums, medians, videos within the
    target), the frames it decoded (sampled frames apart)."""
    target = 1 / 5 if size[0] >= 1280 else 1 / 3
    total = {way: sum(row.cpu[way] for row in group) for way in WAYS if way != "before"}
    parts = []
    for way in PLACED:
        ratios = [row.cpu[way] / row.cpu["ffmpeg"] for row in group]
        decoded = sum(row.decoded[way] for row in group)
        sampled = sum(row.decoded[f"{way}_sampled"] for row in group)
        parts.append(f"{way} / ffmpeg {total[way] / total['ffmpeg']:.2f} "
                     f"(median {statistics.median(ratios):.2f}, "
                     f"{sum(r <= target for r in ratios)} of {len(group)} videos <= {target:.2f}), "
                     f"{decoded} frames decoded ({100 * decoded / sum(row.frames for row in group):.0f}%), "
                     f"{sampled} of them for the sampled frames")
    timed = [row for row in group if row.decoded["before"] >= 0]
    before_cpu = sum(r.cpu["before"] for r in timed) / sum(r.cpu["ffmpeg"] for r in timed) if timed else 0
    before = f"before / ffmpeg {before_cpu:.2f} ({len(timed)} videos decord decoded); " if timed else ""
    return (f"{size[0]}x{size[1]}, {len(group)} videos: " + "; ".join(parts) + f"; {before}anchors / naive "
            f"{total['anchors'] / total['naive']:.2f}, "
            f"analyze / ffmpeg {total['analyze'] / total['ffmpeg']:.2f}")


if __name__ == "__main__":
    main()
