"""Decoding with decord: open a video, read chosen frames, and say clearly why it failed.

A video may be a local path or a pyarrow filesystem URI (``s3://bucket/corpus/videos/x.mp4``): decord
reads files, so a URI is copied into a temporary file that lives as long as its reader.

decord is imported only inside the functions that use it, so that importing dualvad does not
need it (the Ray datasource pattern for optional heavy dependencies).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_PIXELS = 4096 * 2160
"""Default cap on a video's frame size, pixels (width x height): DCI 4K. The decoder holds several frames of
the stream's own size whatever size it resizes to (a 7680 x 4320 H.264 stream took 155 MB more than a
small one to decode 3 frames), so a larger stream is refused before decoding starts."""


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; the message names the file and the cause."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video."""

    num_frames: int
    fps: float  # frames per second, as the container reports
    width: int  # pixels of the decoded (possibly resized) frames
    height: int


def open_video(path: str, width: int = -1, height: int = -1, num_threads: int = 1,
               max_pixels: int | None = MAX_PIXELS) -> Any:
    """Open ``path`` (a local path or a pyarrow URI) with decord, resizing frames to ``width`` x ``height``
    while decoding.

    ``-1`` keeps the original size. ``max_pixels``: the largest stream frame (width x height, pixels) to
    decode, checked from the container's header before decoding; ``None`` for no cap. Returns a
    ``decord.VideoReader``.

    Raises:
        VideoDecodeError: missing or empty file, no video stream, a stream over ``max_pixels``, or a file
            decord cannot demux/decode.
    """
    import decord

    local, copy = local_video(path, max_pixels)
    try:
        reader = decord.VideoReader(local, width=width, height=height, num_threads=num_threads)
    except (decord.DECORDError, RuntimeError) as error:  # decord raises both on bad input
        raise VideoDecodeError(f"{path}: not a decodable video: truncated, corrupt or not a video at all "
            f"({first_line(error)}); re-encode or remove it") from error
    if len(reader) == 0:
        raise VideoDecodeError(f"{path}: container holds no video frames")
    if copy is not None:
        reader.dualvad_copy = copy  # deleted (closed) with the reader, not before: decord seeks in it
    return reader


def local_video(path: str, max_pixels: int | None = MAX_PIXELS) -> tuple[str, Any]:
    """A local file to decode ``path`` from, checked: ``(local path, temporary copy or None)``; a URI is
    copied into a temporary file (deleted when the copy is closed or collected).

    Raises:
        VideoDecodeError: missing or empty file, no video stream, or a stream over ``max_pixels``.
    """
    local, copy = path, None
    if "://" in path:
        copy = _fetch(path)
        local = copy.name
    elif not os.path.exists(path):
        raise VideoDecodeError(f"{path}: file does not exist")
    if os.path.getsize(local) == 0:
        raise VideoDecodeError(f"{path}: file is empty (0 bytes); re-copy or remove it")
    if max_pixels is not None:
        _check_frame_size(path, stream_size(local, path), max_pixels)
    return local, copy


def _fetch(uri: str) -> tempfile._TemporaryFileWrapper:
    """The video at ``uri`` copied into a temporary file (deleted when closed or collected).

    Raises:
        VideoDecodeError: the URI names no file, or its filesystem cannot be reached.
    """
    import pyarrow.fs as pafs

    from dualvad.storage import resolve

    try:
        fs, inner = resolve(uri)
        if fs.get_file_info(inner).type != pafs.FileType.File:
            raise VideoDecodeError(f"{uri}: file does not exist")
        # not a context manager: the file outlives this function, closed (and deleted) with its reader
        copy = tempfile.NamedTemporaryFile(prefix="dualvad-video-", suffix=os.path.splitext(inner)[1])  # noqa: SIM115
        with fs.open_input_stream(inner) as source:
            shutil.copyfileobj(source, copy)
        copy.flush()
    except (OSError, ValueError) as error:  # pyarrow: unreachable store, bad credentials, unknown scheme
        raise VideoDecodeError(f"{uri}: cannot be read ({first_line(error)}); check the URI and the "
                               "filesystem's credentials and endpoint (AWS_ENDPOINT_URL ...)") from error
    return copy


def stream_size(local: str, name: str | None = None) -> tuple[int, int]:
    """(width, height) in pixels of the first video stream of the local file ``local``, from the container's
    header (PyAV; no frame is decoded). ``name``: how errors name the file (default ``local``).

    Raises:
        VideoDecodeError: the file cannot be demuxed or holds no video stream (e.g. audio only).
    """
    import av

    name = name or local
    try:
        with av.open(local) as container:
            streams = container.streams.video
            if not streams:
                raise VideoDecodeError(f"{name}: the container holds no video stream (audio only?); "
                                       "remove it from the corpus")
            context = streams[0].codec_context
            return int(context.width), int(context.height)
    except av.FFmpegError as error:
        raise VideoDecodeError(f"{name}: not a decodable video: truncated, corrupt or not a video at all "
                               f"({first_line(error)}); re-encode or remove it") from error


def _check_frame_size(name: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise VideoDecodeError(
            f"{name}: frames of {width} x {height} = {width * height:,} pixels exceed the cap of "
            f"{max_pixels:,} (ingest.max_pixels); downscale the video (e.g. `ffmpeg -i IN -vf scale=1920:-2 "
            "OUT`) or raise ingest.max_pixels")


def video_info(reader: Any) -> VideoInfo:
    """Frame count, fps and decoded frame size of an open reader."""
    height, width = reader[0].shape[:2] if len(reader) else (0, 0)
    return VideoInfo(len(reader), float(reader.get_avg_fps()), int(width), int(height))


def read_frames(reader: Any, indices: np.ndarray, path: str) -> np.ndarray:
    """Decode the frames at ``indices`` (sorted ascending for sequential decoding).

    Returns:
        uint8 array (len(indices), H, W, 3), RGB.

    Raises:
        VideoDecodeError: a frame could not be decoded (e.g. a truncated file).
    """
    import decord

    try:
        batch = reader.get_batch([int(i) for i in indices]).asnumpy()
    except (decord.DECORDError, RuntimeError) as error:
        raise VideoDecodeError(
            f"{path}: decoding frames {int(indices[0])}..{int(indices[-1])} failed, the file is "
            f"probably truncated or corrupt ({first_line(error)})"
        ) from error
    if batch.shape[0] != len(indices):
        raise VideoDecodeError(
            f"{path}: asked for {len(indices)} frames, decoder returned {batch.shape[0]}"
        )
    return batch


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
