"""The serve tests' app, one for tests/serve (the ``media`` and ``server`` fixtures of
tests/serve/conftest.py): its settings, the media it may read, and how it starts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from dualvad.corpus import SynthSpec, generate_corpus
from dualvad.serve.settings import AppArgs

from loopback import free_port
from media import write_broken_files, write_video
from objectstore import GatedS3

BUDGET = 8
MAX_UPLOAD = 2 * 2**20
MAX_DURATION_S = 8.0
# the batching test holds 8 requests in the Analyzer at once; the queue test 8 there and 8 in Serve's queue
ANALYZER_SLOTS, ANALYZER_QUEUE = 8, 8
READ_TIMEOUT_S = 3.0  # a stalled upload is answered 408 after this
GATE_BUCKET, GATE_KEY = "gate", "held.mp4"
GATE_ROOT = GatedS3.root(GATE_BUCKET)
STREAM_HOSTS = ["127.0.0.1"]  # the loopback stream servers of tests/serve/test_streams.py
MAX_STREAMS = 4
# the shared run's scorer on generated streams: an explosion peaks at 0.84, normal stretches stay under 0.57
# (tests/stream/test_stream_detector.py)
STREAM_ALERT = 0.7
STREAM_SETTINGS = {"vlm": True, "vlm_calls_per_minute": 60.0, "alert_threshold": STREAM_ALERT}
# one Streams replica here, so a late report never hands its streams to another: a short wait is safe
STREAM_ORPHAN_S = 2.0
APP_NAME = "dualvad-test"


def write_media(root: Path) -> dict:
    """Four generated videos (two anomalous), broken files, one too long, one too short, a symlink out."""
    records = generate_corpus(root / "corpus", SynthSpec(videos=4, seconds=3.0, seed=11))
    files = write_broken_files(root / "broken")
    files["long"] = write_video(root / "long.mp4", int(15 * (MAX_DURATION_S + 2)))
    files["short"] = write_video(root / "short.mp4", BUDGET - 3)
    files["gated"] = write_video(root / "gated.mp4", 2 * BUDGET)  # the gate's video: a cheap valid request
    os.symlink("/etc/hostname", root / "escape.mp4")
    return {"root": root, "records": records, **files}


@contextmanager
def serve_app(run: str, tiny: str, media_root: Path) -> Iterator[httpx.Client]:
    """The app on 127.0.0.1:<free port> over ``run`` (budget 8, the tiny VLM), a client of it; shut down
    (Serve only: the session owns Ray) at the end."""
    from ray import serve

    from dualvad.serve.app import compose

    args = AppArgs(run=run, vlm=tiny, allowed_roots=[str(media_root), GATE_ROOT],
                   max_new_tokens=4, max_upload_bytes=MAX_UPLOAD, max_duration_s=MAX_DURATION_S,
                   request_timeout_s=60, max_batch_size=8, batch_wait_timeout_s=0.3,
                   read_timeout_s=READ_TIMEOUT_S, allowed_stream_hosts=STREAM_HOSTS, max_streams=MAX_STREAMS,
                   stream=STREAM_SETTINGS, stream_orphan_s=STREAM_ORPHAN_S)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60})
    small = {"ray_actor_options": {"num_cpus": 0.25}}
    serve.run(compose(args, api=small,
                      analyzer={**small, "max_ongoing_requests": ANALYZER_SLOTS,
                                "max_queued_requests": ANALYZER_QUEUE},
                      judge={**small, "max_ongoing_requests": 32},
                      streams={**small, "health_check_period_s": 0.5}),
              name=APP_NAME, route_prefix="/")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        serve.shutdown()
