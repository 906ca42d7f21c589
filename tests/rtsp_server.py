"""A loopback RTSP server for the stream tests: GStreamer's RTSP server (through PyGObject)
serving one H.264 MP4 file at ``rtsp://127.0.0.1:PORT/live`` in real time, each client from the file's
start. Run by the system Python (``/usr/bin/python3``, which has ``python3-gi``), not the project's venv:

    /usr/bin/python3 tests/rtsp_server.py PORT FILE.mp4

Prints ``ready`` once it listens; runs until killed. Debian packages: ``gir1.2-gst-rtsp-server-1.0``,
``gstreamer1.0-plugins-base``, ``gstreamer1.0-plugins-good`` (``qtdemux``, ``rtph264pay``), ``python3-gi``
(``h264parse`` comes with the RTSP server's dependencies).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - after require_version


def main() -> None:
    port, path = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # config-interval=1: SPS/PPS before every keyframe, so a client joining (or rejoining) decodes at once
    factory.set_launch(f"( filesrc location={path} ! qtdemux ! h264parse ! "
                       "rtph264pay name=pay0 pt=96 config-interval=1 )")
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
