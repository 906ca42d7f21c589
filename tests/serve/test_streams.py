"""Live streams over real HTTP on the tests' one app (``server``, tests/serve/conftest.py): URLs outside the
app's settings refused before anything reaches a replica; a stream added, adopted by the Streams replica,
listed, read and deleted; on a live HLS stream of an explosion, its Server-Sent Events, its page in
headless Chromium, and its re-opening when its replica is killed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from dualvad.corpus.synth_plan import SynthSpec, plan_corpus
from dualvad.corpus.synthetic import encode_mp4, render_video
from dualvad.serve.schemas import ErrorResponse, StreamInfo, StreamList

from browser import CHROMIUM, MISSING, assert_not_blank, live_page
from faultlog import record_fault
from loopback import free_port
from raykill import descendants_named
from serveapp import APP_NAME, STREAM_HOSTS
from serveapp import STREAM_ALERT as ALERT
from streams import HlsStream, require_servers

ADOPTION_BOUND_S = 30.0  # a bound, not a wait: a replica reports every 0.5 s
EVENT_BOUND_S = 60.0
# tests/stream/test_stream_detector.py's explosion: a generated 12-s video exploding from frame 92 (15 fps)
SPEC = SynthSpec(videos=6, seconds=12.0, seed=11)
EXPLOSION = 4
# the stream's clip starts 5 s before the explosion: the detector scores once its window of the run's 8
# segments (4 s) is full, so an explosion in the first 4 s of a stream is not one it can see
LEAD_FRAMES = 75


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = ErrorResponse.model_validate(response.json())
    assert body.error.code == code and body.request_id == response.headers["x-request-id"]
    return body.error.message


def _stream(server: httpx.Client, stream_id: str) -> StreamInfo:
    response = server.get(f"/v1/streams/{stream_id}")
    assert response.status_code == 200, response.text
    return StreamInfo.model_validate(response.json())


def _until(condition, bound_s: float, what: str):
    """``condition()``'s first true value; fails after ``bound_s`` (a bound on a condition, not a sleep)."""
    deadline = time.monotonic() + bound_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not {what} within {bound_s} s"
        time.sleep(0.05)
    return value


def test_a_url_outside_the_apps_settings_is_refused_and_nothing_is_added(server):
    before = StreamList.model_validate(server.get("/v1/streams").json()).streams
    refused = server.post("/v1/streams", json={"url": "ftp://127.0.0.1/cam"})
    assert _error(refused, 403, "forbidden_stream") == (
        "stream URL scheme 'ftp' is not allowed (allowed: rtsp, rtsps, http, https): add it to the app's "
        "allowed_stream_schemes")
    refused = server.post("/v1/streams", json={"url": "rtsp://10.0.0.7/h264"})
    assert _error(refused, 403, "forbidden_stream") == (
        f"stream host '10.0.0.7' is not allowed (allowed: {', '.join(STREAM_HOSTS)}): start the server with "
        "`dualvad serve --allow-stream-host 10.0.0.7` or add it to the app's allowed_stream_hosts")
    assert "needs a scheme and a host" in _error(server.post("/v1/streams", json={"url": "/dev/video0"}), 422,
                                                 "invalid_url")
    assert "nme" in _error(server.post("/v1/streams", json={"url": "rtsp://127.0.0.1/x", "nme": "typo"}), 422,
                           "invalid_option")
    assert "not valid JSON" in _error(server.post("/v1/streams", content=b"{", headers={
        "content-type": "application/json"}), 400, "bad_json")
    assert "since_s" in _error(server.get("/v1/streams/none/timeline", params={"since_s": "soon"}), 422,
                               "invalid_option")
    assert StreamList.model_validate(server.get("/v1/streams").json()).streams == before


def test_a_stream_is_added_adopted_listed_read_and_deleted_and_its_sse_ends(server, explosion_clip):
    """A camera that does not answer (nothing listens on the port): the stream is still added (201), adopted
    by the Streams replica (started by ``explosion_clip``), listed; deleting it ends its SSE with
    ``event: end`` and it is gone (404)."""
    url = f"rtsp://127.0.0.1:{free_port()}/gone"
    response = server.post("/v1/streams", json={"url": url, "name": "gone"})
    assert response.status_code == 201, response.text
    added = StreamInfo.model_validate(response.json())
    assert (added.name, added.url, added.state, added.events) == ("gone", url, "pending", 0)
    stream_id = added.stream_id
    adopted = _followed(server, stream_id)
    assert adopted.adoptions == 1 and adopted.state in ("connecting", "reconnecting")
    listed = StreamList.model_validate(server.get("/v1/streams").json()).streams
    assert stream_id in [stream.stream_id for stream in listed]

    lines: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with server.stream("GET", f"/v1/streams/{stream_id}/events", timeout=60) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            opened.set()
            lines.extend(events.iter_lines())  # until the server ends the stream

    listener = threading.Thread(target=listen)
    listener.start()
    assert opened.wait(ADOPTION_BOUND_S)
    deleted = server.delete(f"/v1/streams/{stream_id}")
    assert deleted.status_code == 200 and StreamInfo.model_validate(deleted.json()).state == "deleted"
    listener.join(ADOPTION_BOUND_S)
    assert not listener.is_alive() and "event: end" in lines, lines
    assert stream_id in _error(server.get(f"/v1/streams/{stream_id}"), 404, "unknown_stream")
    _error(server.get(f"/v1/streams/{stream_id}/events"), 404, "unknown_stream")
    _error(server.delete(f"/v1/streams/{stream_id}"), 404, "unknown_stream")


def _followed(server: httpx.Client, stream_id: str) -> StreamInfo:
    """The stream once a replica follows it (its detector's status reported: the replica has loaded the
    run's analyzer, which it does with its first stream, after Serve started it for the first)."""
    return _until(lambda: (info := _stream(server, stream_id)).status and info, ADOPTION_BOUND_S,
                  "followed by a Streams replica")


@pytest.fixture(scope="module")
def explosion_clip(server, tmp_path_factory) -> Path:
    """The explosion's clip (starting LEAD_FRAMES before it), rendered while Serve starts a Streams replica
    for a stream added first (none runs while no stream is wanted) and the replica loads the run's
    analyzer; returned once that replica follows the stream (deleted then). A live stream added after this
    is read from its start, so its explosion 5 s in is seen the first time round."""
    require_servers()
    warm = server.post("/v1/streams", json={"url": f"rtsp://127.0.0.1:{free_port()}/warm"}).json()
    plan = plan_corpus(SPEC)[EXPLOSION]
    path = tmp_path_factory.mktemp("stream-hls") / "explosion.mp4"
    encode_mp4(render_video(SPEC, plan)[plan.event[0] - LEAD_FRAMES:], path, SPEC.fps)
    _followed(server, warm["stream_id"])
    server.delete(f"/v1/streams/{warm['stream_id']}")
    return path


@pytest.fixture
def explosion_hls(explosion_clip):
    """A live HLS stream on loopback (ffmpeg, real time, looped) of the explosion's clip: its URL."""
    with HlsStream(explosion_clip, explosion_clip.parent / "live") as hls:
        yield hls.url


@pytest.fixture
def explosion_stream(server, explosion_hls):
    """The id of a stream the app follows on the live explosion (deleted at the end)."""
    added = server.post("/v1/streams", json={"url": explosion_hls, "name": "explosion"})
    stream_id = added.json()["stream_id"]
    yield stream_id
    server.delete(f"/v1/streams/{stream_id}")


def sse_messages(server: httpx.Client, stream_id: str, done, bound_s: float = EVENT_BOUND_S) -> list[dict]:
    """The stream's SSE messages from the first one held ({"id", "event", "data"}, data parsed, and the wall
    time it was ``received``), read until
    ``done(messages)`` holds or the server ends them; fails after ``bound_s``."""
    messages: list[dict] = []
    with server.stream("GET", f"/v1/streams/{stream_id}/events", timeout=bound_s) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        message: dict = {}
        for line in events.iter_lines():
            if line.startswith(":"):  # a keep-alive comment
                continue
            if line:
                field, _, value = line.partition(": ")
                message[field] = json.loads(value) if field == "data" else value
                continue
            if not message:  # the blank line after a comment
                continue
            messages.append({**message, "received": time.time()})
            message = {}
            if done(messages) or messages[-1]["event"] == "end":
                break
    return messages


def _opened(messages: list[dict]) -> bool:
    return any(message["event"] == "open" for message in messages)


def test_sse_and_the_page_show_the_event_a_live_stream_produces(server, explosion_stream, tmp_path):
    """A live HLS stream of an explosion followed by the app: its SSE delivers the event (``event: open``,
    ``id:`` the event id, the event as JSON), and the stream's page in headless Chromium, open before the
    event happened, shows it with its thumbnail and the scores drawn."""
    if CHROMIUM is None:
        pytest.skip(MISSING)
    got: list[list[dict]] = []
    listener = threading.Thread(target=lambda: got.append(sse_messages(server, explosion_stream, _opened)),
                                daemon=True)
    listener.start()
    with live_page() as page:
        page.goto(f"{server.base_url}/streams/{explosion_stream}")
        page.wait_for_selector("#events li[data-event-id] img", timeout=EVENT_BOUND_S * 1000)
        shown = page.locator("#events li[data-event-id]").first.get_attribute("data-event-id")
        assert "score" in page.locator("#events li .what").first.inner_text()
        page.wait_for_selector("#timeline polyline.scores[points*=',']", timeout=EVENT_BOUND_S * 1000)
        assert page.locator("#timeline rect.event").count() >= 1
        page.screenshot(path=str(tmp_path / "stream.png"), full_page=True)
    assert_not_blank(tmp_path / "stream.png")
    listener.join(EVENT_BOUND_S)
    assert got, "no SSE messages"
    message = got[0][-1]
    event = message["data"]
    assert message["event"] == "open" and message["id"] == event["event_id"] == shown
    assert event["stream_id"] == explosion_stream and event["state"] == "open"
    assert event["score"] >= ALERT and event["thumbnail_jpeg"]
    # the event's end_time is when the frame that opened it arrived: analysis, the registry and the SSE hop
    arrived = datetime.fromisoformat(event["end_time"]).timestamp()
    print(f"\nstream event to SSE client: {message['received'] - arrived:.2f} s after its frame arrived")
    info = _stream(server, explosion_stream)
    assert info.events >= 1 and info.status["frames_analysed"] > 0 and info.state == "live"


@pytest.fixture
def held_explosion_stream(server, explosion_clip, tmp_path):
    """The id of a stream the app follows whose event cannot close by itself: a live HLS stream that plays
    the explosion's lead and the explosion twice over, once, and then stalls (no end marker). No frame after
    the explosion ever reaches the detector, so the event it opens stays open until something else closes
    it (deleted at the end)."""
    plan = plan_corpus(SPEC)[EXPLOSION]
    frames = render_video(SPEC, plan)
    start, end = plan.event  # [start, end)
    held = np.concatenate([frames[start - LEAD_FRAMES:end], frames[start:end]])
    clip = tmp_path / "explosion-held.mp4"
    encode_mp4(held, clip, SPEC.fps)
    with HlsStream(clip, tmp_path / "live", loop=False) as hls:
        stream_id = server.post("/v1/streams", json={"url": hls.url, "name": "held"}).json()["stream_id"]
        yield stream_id
        server.delete(f"/v1/streams/{stream_id}")


def test_a_killed_streams_replica_has_its_stream_re_opened_and_no_event_doubled(server,
                                                                                held_explosion_stream):
    """The Streams replica is SIGKILLed while an event is open (one that cannot close by itself: its stream
    stalls in the explosion): Serve starts another, which adopts the stream once the registry has not heard
    from the old one for ``stream_orphan_s``; the open event is closed once (by the registry: its owner is
    gone), and the SSE replay holds no event opened or closed twice."""
    stream_id = held_explosion_stream
    def still_open(messages: list[dict]) -> list[str]:
        closed = {m["id"] for m in messages if m["event"] == "close"}
        return [m["id"] for m in messages if m["event"] == "open" and m["id"] not in closed]

    dangling = still_open(sse_messages(server, stream_id, still_open))[0]
    before = _stream(server, stream_id)
    pids = descendants_named(f"ServeReplica:{APP_NAME}:Streams")
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    killed = time.monotonic()
    adopted = before.adoptions + 1  # one adoption more than before the kill, whatever ran before it
    after = _until(lambda: (info := _stream(server, stream_id)).adoptions == adopted and info,
                   EVENT_BOUND_S, "re-opened by another replica")
    recovery_s = time.monotonic() - killed
    assert after.replica != before.replica
    # every message up to the dangling event's close, in the order the registry took them
    replay = sse_messages(server, stream_id, lambda messages: dangling not in still_open(messages))
    kinds = Counter((m["id"], m["event"]) for m in replay)
    doubled = sorted(key for key, count in kinds.items() if count > 1)
    closing = [m["data"] for m in replay if m["id"] == dangling and m["event"] == "close"]
    record_fault("serve: the Streams replica SIGKILLed with an event open", "re-opened",
                 rows_lost=0 if closing else 1, rows_duplicated=len(doubled), recovery_s=recovery_s)
    assert doubled == [] and len(closing) == 1
    assert closing[0]["extra"]["closed_by"] == "replica lost"
