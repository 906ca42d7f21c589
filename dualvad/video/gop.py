"""Decoding chosen frames with PyAV, decoding only what they need: :class:`GopReader`.

A frame of an H.264 video can only be decoded after every reference frame since the keyframe before it
(its group of pictures, GOP). Camera archives are encoded with x264's defaults: a keyframe every 250
frames (8 s at 30 fps) and B-frames. Reading a few frames per segment with decord there decodes nearly
every frame of the video (the anchors fall all over each GOP) and converts each to RGB on the way.
:class:`GopReader` decodes, per GOP holding a wanted frame, from its keyframe up to the last wanted frame
and no further, skips GOPs holding none (a seek), and tells the decoder to skip the non-reference frames
(B-frames nothing refers to) that are not wanted themselves; only wanted frames are converted (and
resized) to RGB. It counts the frames the decoder produced (:attr:`GopReader.frames_decoded`), so a caller
can print how much decoding a read cost.

Frame ``i`` is the ``i``-th presentation timestamp of the stream's packets in order, decord's numbering,
so indices, frame counts and keyframes are the same as :mod:`dualvad.video.decode`'s.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from dualvad.video.decode import MAX_PIXELS, VideoDecodeError, first_line, local_video


class FrameScaler:
    """Decoded frames resized and converted to RGB as decord does it: through a libavfilter graph
    ``scale=W:H:flags=bilinear`` then ``format=rgb24``. That gives decord's pixels exactly (measured on the
    generated and the real-footage corpora), where swscale called directly (``VideoFrame.reformat``)
    differs by up to 40 levels at some pixels; so a file read here, by decord at ingest, or a live stream
    (:mod:`dualvad.stream`) gives a scorer the same pixels. One graph per (source format and size, target
    size), kept."""

    def __init__(self) -> None:
        self._graphs: dict[tuple, Any] = {}

    def rgb(self, frame: Any, width: int, height: int) -> np.ndarray:
        """``frame`` (an ``av.VideoFrame``) scaled to ``width`` x ``height``: uint8 (height, width, 3)."""
        import av

        key = (frame.format.name, frame.width, frame.height, width, height)
        graph = self._graphs.get(key)
        if graph is None:
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                      time_base=frame.time_base or Fraction(1, 90000))
            nodes = [source, graph.add("scale", f"{width}:{height}:flags={SCALE_FLAGS}"),
                     graph.add("format", "rgb24"), graph.add("buffersink")]
            for before, after in zip(nodes, nodes[1:], strict=False):
                before.link_to(after)
            graph.configure()
            self._graphs[key] = graph
        graph.push(frame)
        return graph.pull().to_ndarray()


SCALE_FLAGS = "bilinear"

#: :meth:`GopReader.keep` holds frames as decoded (converted only if read) while they take at most this many
#: bytes, and converted past it: the 128 window anchors of a 1280 x 720 video as decoded take 177 MB.
KEEP_DECODED_BYTES = 192 * 2**20


def frame_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``longest`` px, aspect kept, even sizes."""
    scale = longest / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


class GopReader:
    """One open video (a local path or a pyarrow URI, as :func:`dualvad.video.decode.open_video`).

    ``num_threads``: decoder threads (1: single-threaded, and non-reference frames are skipped; with more,
    frame threading decodes every frame of the GOP prefixes read). ``max_pixels``: the largest stream frame
    (width x height, pixels) to decode, ``None`` for no cap.

    Raises:
        VideoDecodeError: missing or empty file, no video stream, a stream over ``max_pixels``, a file that
            cannot be demuxed, or no frames.
    """

    def __init__(self, path: str, num_threads: int = 1, max_pixels: int | None = MAX_PIXELS) -> None:
        import av

        self.path = path
        self._local, self._copy = local_video(path, max_pixels)
        try:
            self._container = av.open(self._local)
            self._stream = self._container.streams.video[0]
            self._index()
        except av.FFmpegError as error:
            self.close()
            raise VideoDecodeError(f"{path}: not a decodable video: truncated, corrupt or not a video at all "
                                   f"({first_line(error)}); re-encode or remove it") from error
        if not len(self.pts):
            self.close()
            raise VideoDecodeError(f"{path}: container holds no video frames")
        declared = int(self._stream.frames or 0)  # the container's index (mp4: the sample table)
        if declared > len(self.pts):
            self.close()
            raise VideoDecodeError(f"{path}: not a decodable video: truncated, corrupt or not a video at all "
                                   f"(its index lists {declared} frames, the file holds {len(self.pts)}); "
                                   "re-encode or remove it")
        context = self._stream.codec_context
        context.thread_count = num_threads
        if num_threads > 1:
            context.thread_type = "FRAME"
        self._skip_nonref = num_threads == 1  # with frame threads a per-packet skip setting may lag
        self._coded = (int(context.width), int(context.height))
        self._rotation: int | None = None  # degrees counterclockwise, from the first decoded frame
        self.frames_decoded = 0  # frames the decoder produced, over every read
        self._scaler = FrameScaler()
        self._keep: set[int] = set()  # frames to hold when a walk decodes them (keep())
        self._keep_longest = 0
        self._kept: dict[int, Any] = {}  # index -> uint8 (H, W, 3) at the keep size, or the decoded frame
        self._kept_bytes = 0  # of the frames held as decoded

    # ------------------------------------------------------------------------------------------- index

    def _index(self) -> None:
        """Demux every packet (no decoding): presentation timestamps in display order, keyframes, fps."""
        stamps, keys, decode_order = [], [], []
        for packet in self._container.demux(self._stream):
            if packet.pts is None:
                continue  # the demuxer's end-of-stream packet
            stamps.append(packet.pts)
            decode_order.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
        self.pts = np.sort(np.asarray(stamps, dtype=np.int64))
        self._frame_of = {int(p): i for i, p in enumerate(self.pts)}
        self.keyframes = np.sort([self._frame_of[int(p)] for p in keys]).astype(np.int64)
        # Leading pictures (open GOPs): a frame decoded after a keyframe but shown before it refers to the
        # GOP before, so that GOP must be decoded first.
        order = np.asarray([self._frame_of[int(p)] for p in decode_order], dtype=np.int64)
        self._open_gops = bool(np.any((order[1:] < order[:-1]) & np.isin(order[:-1], self.keyframes)))
        # keyframe (display index) -> its packet's position in decode order
        keys = set(self.keyframes.tolist())
        self._key_position = {frame: at for at, frame in enumerate(order.tolist()) if frame in keys}
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def rotation(self) -> int:
        """The display matrix's rotation, degrees counterclockwise (0, 90, 180 or 270), as phones record
        portrait video; read from the first frame (decoded once, when first asked)."""
        if self._rotation is None:
            self.read(np.array([0]), 2, 2)  # sets it
        return int(self._rotation or 0)

    @property
    def width(self) -> int:
        """Width of the picture as shown (the display matrix applied), pixels."""
        return self._coded[1] if self.rotation % 180 else self._coded[0]

    @property
    def height(self) -> int:
        return self._coded[0] if self.rotation % 180 else self._coded[1]

    # -------------------------------------------------------------------------------------------- read

    def read(self, indices: np.ndarray, width: int = -1, height: int = -1) -> np.ndarray:
        """Decode frames ``indices`` (any order, repeats allowed), turned upright by the display matrix and
        resized to ``width`` x ``height`` (-1: the picture's size), as decord does.

        Returns:
            uint8 array (len(indices), H, W, 3), RGB, in the order of ``indices``.

        Raises:
            VideoDecodeError: an index out of range, or a frame the decoder did not return (a truncated or
                corrupt file).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise VideoDecodeError(f"{self.path}: frames {int(indices.min())}..{int(indices.max())} asked, "
                                   f"the video has {len(self)}")
        if width == -1 or height == -1:
            width, height = (self.width if width == -1 else width), (self.height if height == -1 else height)
        size = (width, height)
        wanted = np.unique(indices)
        found = {int(i): self._held(int(i), size) for i in wanted if int(i) in self._kept} \
            if self._kept and size == self._keep_size() else {}
        wanted = np.asarray([i for i in wanted if int(i) not in found], dtype=np.int64)
        remaining = {int(i) for i in wanted}
        packets = None  # the demuxer's packets since the last seek, and how many were fed
        for group in self._gops(wanted):
            packets = self._decode_group(group, packets, remaining, size, found)
        if not len(indices):
            return np.zeros((0, size[1], size[0], 3), np.uint8)
        return np.stack([found[int(i)] for i in indices])

    def keep(self, indices: np.ndarray, longest: int) -> None:
        """From now on, hold frames ``indices`` (int (N,)) resized so that the longer side is ``longest`` px
        (:func:`frame_size`, turned upright) whenever a read's walk decodes them, so that a later read of
        them at that size takes them from memory instead of decoding their GOP a second time. The detector
        keeps, while the features are read, the window anchors its sampled frames move onto
        (:func:`dualvad.video.segments.window_anchors`). A frame no walk decodes is not held (the decoder
        skips unwanted non-reference frames). Frames are held as decoded, converted only if read (most kept
        frames never are), while they take at most :data:`KEEP_DECODED_BYTES`, and converted past it:
        memory at most that plus N x H x W x 3 bytes. Replaces an earlier keep and what it held."""
        self._keep, self._keep_longest, self._kept = {int(i) for i in indices}, longest, {}
        self._kept_bytes = 0  # of the frames held as decoded

    def _keep_size(self) -> tuple[int, int]:
        """(width, height) of the frames :meth:`keep` holds; the rotation is known once a frame is decoded."""
        return frame_size(self.width, self.height, self._keep_longest)

    def _gops(self, wanted: np.ndarray) -> list[np.ndarray]:
        """``wanted`` (sorted, unique) split by GOP (the last keyframe at or before each frame)."""
        gop = np.searchsorted(self.keyframes, wanted, side="right") - 1
        cuts = np.flatnonzero(np.diff(gop)) + 1
        return np.split(wanted, cuts) if len(wanted) else []

    def _decode_group(self, group: np.ndarray, packets: tuple[Any, int] | None, remaining: set[int],
                      size: tuple[int, int], found: dict[int, np.ndarray]) -> tuple[Any, int] | None:
        """Decode up to the last frame of ``group`` (one GOP's wanted frames), converting every wanted frame
        the decoder returns into ``found``. Goes on from ``packets`` (the demuxer and the decode-order
        position it reached) when it has not passed the GOP's keyframe by more than its own packets; else
        seeks to that keyframe (the GOP before with open GOPs). Returns where it stopped."""
        import av

        mine = set(group.tolist())
        if not remaining & mine:
            return packets  # returned while an earlier GOP was decoded
        gop = int(np.searchsorted(self.keyframes, group[0], side="right")) - 1 - int(self._open_gops)
        key = int(self.keyframes[gop]) if gop >= 0 else 0
        context = self._stream.codec_context
        try:
            if packets is None or packets[1] < self._key_position[key]:  # the GOP before not fed to its end
                self._container.seek(int(self.pts[key]), stream=self._stream, backward=True, any_frame=False)
                context.flush_buffers()
                packets = (self._container.demux(self._stream), self._key_position[key])
            demuxer, position = packets
            for packet in demuxer:
                position += 1
                frame_index = self._frame_of.get(packet.pts) if packet.pts is not None else None
                if self._skip_nonref:
                    context.skip_frame = "DEFAULT" if frame_index in remaining else "NONREF"
                for frame in context.decode(packet):
                    self._take(frame, remaining, size, found)
                if not remaining & mine:
                    return demuxer, position
        except av.FFmpegError as error:
            raise VideoDecodeError(f"{self.path}: decoding {int(group[0])}..{int(group[-1])} failed, the "
                                   f"file is probably truncated or corrupt ({first_line(error)})") from error
        raise VideoDecodeError(f"{self.path}: the decoder returned no frame {min(remaining)} (of "
                               f"{len(self)}); the file is probably truncated or corrupt")

    def _take(self, frame: Any, remaining: set[int], size: tuple[int, int],
              found: dict[int, np.ndarray]) -> None:
        """Count ``frame``; convert it into ``found`` when it is one of ``remaining``, and into the held
        frames when :meth:`keep` asked for it."""
        self.frames_decoded += 1
        index = self._frame_of.get(frame.pts)
        if self._rotation is None:
            self._rotation = int(round(frame.rotation / 90)) * 90 % 360
        if index in remaining:
            remaining.discard(index)
            found[index] = self._upright(frame, size)
        if index in self._keep and index not in self._kept:
            kept = self._keep_size()
            if index in found and kept == size:  # converted once for both
                self._kept[index] = found[index]
            elif self._kept_bytes + _frame_bytes(frame) <= KEEP_DECODED_BYTES:
                self._kept[index], self._kept_bytes = frame, self._kept_bytes + _frame_bytes(frame)
            else:
                self._kept[index] = self._upright(frame, kept)

    def _held(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Kept frame ``index`` at the keep size ``size``, converted now if it was held as decoded."""
        held = self._kept[index]
        if not isinstance(held, np.ndarray):
            held = self._kept[index] = self._upright(held, size)
        return held

    def _upright(self, frame: Any, size: tuple[int, int]) -> np.ndarray:
        """``frame`` converted to RGB at ``size`` (width, height) as shown: uint8 (height, width, 3)."""
        turns = self._rotation // 90  # np.rot90 turns counterclockwise, as the matrix does
        width, height = size[::-1] if turns % 2 else size  # the size of the picture before it turns
        array = self._scaler.rgb(frame, width, height)
        return np.ascontiguousarray(np.rot90(array, turns)) if turns else array

    # ---------------------------------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close the container (and delete the local copy of a URI); drop the frames :meth:`keep` held."""
        self._kept, self._kept_bytes = {}, 0
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None
        if self._copy is not None:
            self._copy.close()
            self._copy = None

    def __enter__(self) -> GopReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _frame_bytes(frame: Any) -> int:
    """Bytes of a decoded ``av.VideoFrame``'s planes."""
    return sum(plane.buffer_size for plane in frame.planes)
