"""Live sources on loopback for the stream tests: generated clips (ffmpeg's ``testsrc``), a real RTSP server
(GStreamer's, :mod:`rtsp_server`, run by the system Python) and a live HLS stream written by ffmpeg and
served by a loopback HTTP server; and :func:`wait_for`, the bounded wait on a condition.

Debian packages (``.ci/run`` installs them): ``ffmpeg``, ``gir1.2-gst-rtsp-server-1.0``,
``gstreamer1.0-plugins-base``, ``gstreamer1.0-plugins-good``, ``python3-gi``. Where they are missing the
tests that need them skip with :data:`MISSING`, except in CI (``CI`` set), where they fail: a CI run that
lost its servers must not pass by skipping.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loopback import free_port

FFMPEG = shutil.which("ffmpeg")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, which python3-gi serves; the venv has no gi
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
PACKAGES = ("ffmpeg gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
            "python3-gi")
MISSING = f"the stream tests' servers are missing: install them (Debian: `apt-get install {PACKAGES}`)"
_START_S = 15.0  # the longest a server may take to start (it takes well under a second)

_GST_CHECK = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [n for n in ("filesrc", "qtdemux", "h264parse", "rtph264pay") if Gst.ElementFactory.find(n) is None]
assert not missing, missing
"""


@functools.cache
def servers_present() -> bool:
    """Whether ffmpeg and GStreamer's RTSP server (with the elements :mod:`rtsp_server` uses) are here."""
    if FFMPEG is None or not os.path.exists(SYSTEM_PYTHON):
        return False
    check = subprocess.run([SYSTEM_PYTHON, "-c", _GST_CHECK], capture_output=True, timeout=60)
    return check.returncode == 0


def require_servers() -> None:
    """Skip the calling test without the servers; fail it in CI (module docstring)."""
    if servers_present():
        return
    if os.environ.get("CI"):
        pytest.fail(MISSING)
    pytest.skip(MISSING)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Return once ``condition()`` holds; fail after ``timeout_s`` (a bound, never a duration to wait)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


def make_clip(path: Path, seconds: float, width: int = 320, height: int = 240, fps: int = 30,
              ts_offset_s: float = 0.0, noise: int = 0) -> Path:
    """A generated H.264 clip (ffmpeg's ``testsrc``: a counter and moving colours; ``noise``: temporal noise
    of that strength, 0-100, for a camera's bit rate) in the container ``path``'s suffix names (``.mp4``,
    ``.ts``), a keyframe every half second (the HLS segment length), no B-frames; its timestamps start at
    ``ts_offset_s``."""
    source = f"testsrc=size={width}x{height}:rate={fps}" + (f",noise=alls={noise}:allf=t" if noise else "")
    command = [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", source,
               "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", str(max(fps // 2, 1)),
               "-pix_fmt", "yuv420p", "-output_ts_offset", str(ts_offset_s), str(path)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return path


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RtspServer:
    """GStreamer's RTSP server serving ``clip`` (an H.264 MP4) at :attr:`url`, each client from the clip's
    start, in real time. :meth:`kill` and :meth:`start` (the same port) make it disappear and come back;
    :meth:`pause` and :meth:`resume` (SIGSTOP, SIGCONT) make it stall with its sockets open."""

    def __init__(self, clip: Path) -> None:
        self.clip, self.port = clip, free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port), str(self.clip)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        process = self.process
        try:
            wait_for(lambda: process.poll() is not None or _port_open(self.port), _START_S,
                     f"the RTSP server on port {self.port}")
        except AssertionError:
            self.kill()
            raise
        if process.poll() is not None:
            raise RuntimeError(f"the RTSP server exited: {process.stderr.read().decode(errors='replace')}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL ends a paused (SIGSTOP) server too
            self.process.wait(10)
        if self.process is not None:
            self.process.stderr.close()
        self.process = None

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RtspServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A source stopped mid-segment resets its connection: expected here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HlsStream:
    """A live HLS stream: ffmpeg plays ``clip`` in a loop in real time (``-re``) into half-second segments
    and a live playlist (the last 6 segments) under ``folder``, served at :attr:`url` by a loopback
    ``http.server`` thread. Ready once the playlist lists two segments. ``loop=False``: ``clip`` is played
    once and the playlist then stays as it is, without an end marker: a live stream that stalls after the
    clip's last frame (its reader gets no frame after it, and the stream never ends)."""

    def __init__(self, clip: Path, folder: Path, loop: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.playlist = folder / "live.m3u8"
        repeat = ["-stream_loop", "-1"] if loop else []
        flags = "delete_segments" if loop else "delete_segments+omit_endlist"
        command = [FFMPEG, "-v", "error", "-re", *repeat, "-i", str(clip), "-c", "copy",
                   "-f", "hls", "-hls_time", "0.5", "-hls_list_size", "6", "-hls_flags", flags,
                   str(self.playlist)]
        self.ffmpeg = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.http = _QuietServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/live.m3u8"
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self._thread.start()
        try:
            wait_for(lambda: self.ffmpeg.poll() is not None or self._segments() >= 2, _START_S,
                     "ffmpeg's HLS playlist")
            if self.ffmpeg.poll() is not None:
                raise RuntimeError(f"ffmpeg's HLS output exited with {self.ffmpeg.returncode}")
        except BaseException:
            self.close()
            raise

    def stop_publisher(self) -> None:
        """Kill ffmpeg: the playlist stays as it was (no end marker), served still: a stalled live stream."""
        self.ffmpeg.kill()
        self.ffmpeg.wait(10)

    def _segments(self) -> int:
        try:
            return self.playlist.read_text().count("#EXTINF")
        except OSError:
            return 0

    def close(self) -> None:
        if self.ffmpeg.poll() is None:
            self.ffmpeg.kill()
        self.ffmpeg.wait(10)
        self.http.shutdown()
        self.http.server_close()
        self._thread.join(10)

    def __enter__(self) -> HlsStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
