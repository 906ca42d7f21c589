"""Live streams, the source half (issue 31): how many 320x240, 30-fps streams one process follows with
:class:`dualvad.stream.source.LiveSource` (every frame decoded, 10 analysed per second, taken by a consumer
that does no analysis), and whether they keep up (lag not growing, nothing dropped).

One ffmpeg publishes a generated clip (``testsrc`` with temporal noise, about a camera's bit rate) as live
HLS on loopback (the tests' :class:`streams.HlsStream`); N sources follow it at once, each with its reader
thread and a consumer thread, for ``--seconds``. Printed per N: the process's CPU seconds per stream per
second (decoding, demuxing, the reader's Python), the streams one core would hold at that cost, the frames
decoded per second per stream, the frames dropped while measured, and how far the worst stream's newest
frame trails the wall clock at the start and the end of the measurement (growing: not keeping up;
negative: ahead, as HLS hands its last three segments over at once when a source joins).

    .venv/bin/python bench/stream_source.py --streams 1 8 32 --seconds 20

Needs ffmpeg (Debian ``ffmpeg``). The stream detector on RTSP, with analysis and alerts: bench/streams.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dualvad.stream.source import LiveSource  # noqa: E402

from streams import HlsStream, make_clip  # noqa: E402 - the tests' loopback servers


def follow(url: str, count: int, seconds: float, warmup_s: float = 5.0) -> dict[str, float]:
    """``count`` sources on ``url`` for ``warmup_s + seconds``; the figures of the last ``seconds``."""
    sources = [LiveSource(url, analysis_fps=10, queue_frames=4) for _ in range(count)]
    newest = [0.0] * count  # each consumer's newest stream_s

    def consume(number: int) -> None:
        for item in sources[number].frames():
            newest[number] = item.stream_s

    threads = [threading.Thread(target=consume, args=(n,), daemon=True) for n in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(warmup_s)  # the first segments come at once (and 32 sources take a while to open)

    def trail() -> float:  # the worst stream: wall seconds since start minus its newest frame's stream_s
        return max(time.monotonic() - started - s for s in newest)

    lag_start, cpu_start, wall_start = trail(), time.process_time(), time.monotonic()
    decoded_start = sum(source.stats.frames_decoded for source in sources)
    dropped_start = sum(source.stats.frames_dropped for source in sources)
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu_start, time.monotonic() - wall_start
    decoded = sum(source.stats.frames_decoded for source in sources) - decoded_start
    lag_end = trail()
    dropped = sum(source.stats.frames_dropped for source in sources) - dropped_start
    reconnects = sum(source.stats.reconnects for source in sources)
    errors = sorted({source.stats.error for source in sources if source.stats.error})
    for source in sources:
        source.stop()
    cpu_per_stream = cpu / wall / count
    return {"streams": count, "cpu_per_stream": cpu_per_stream, "per_core": 1 / cpu_per_stream,
            "fps_per_stream": decoded / wall / count, "dropped": dropped, "lag_start": lag_start,
            "lag_end": lag_end, "reconnects": reconnects, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(Path(folder) / "camera.mp4", 10, noise=20)
        print(f"clip: 320x240, 30 fps, {clip.stat().st_size * 8 / 10 / 1000:.0f} kbit/s")
        with HlsStream(clip, Path(folder) / "hls") as hls:
            print("streams  cpu s/stream/s  streams/core  fps/stream  dropped  trail start s  trail end s  "
                  "reconnects")
            for count in args.streams:
                row = follow(hls.url, count, args.seconds)
                print(f"{row['streams']:7d}  {row['cpu_per_stream']:14.4f}  {row['per_core']:12.1f}  "
                      f"{row['fps_per_stream']:10.1f}  {row['dropped']:7d}  {row['lag_start']:13.2f}  "
                      f"{row['lag_end']:11.2f}  {row['reconnects']:10d}  {'; '.join(row['errors'])}")


if __name__ == "__main__":
    main()
