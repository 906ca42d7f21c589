"""Live streams over real HTTP on the tests' one app (``server``, tests/serve/conftest.py): URLs outside the
app's settings refused before anything reaches a replica; a stream added, adopted by the Streams replica,
listed, read and deleted; its Server-Sent Events."""

from __future__ import annotations

import threading
import time

import httpx

from dualvad.serve.schemas import ErrorResponse, StreamInfo, StreamList

from loopback import free_port
from serveapp import STREAM_HOSTS

ADOPTION_BOUND_S = 30.0  # a bound, not a wait: a replica reports every 0.5 s


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
    message = _error(server.post("/v1/streams", json={"url": "ftp://127.0.0.1/cam"}), 403, "forbidden_stream")
    assert message == ("stream URL scheme 'ftp' is not allowed (allowed: rtsp, rtsps, http, https): add it to "
                       "the app's allowed_stream_schemes")
    message = _error(server.post("/v1/streams", json={"url": "rtsp://10.0.0.7/h264"}), 403, "forbidden_stream")
    assert message == (f"stream host '10.0.0.7' is not allowed (allowed: {', '.join(STREAM_HOSTS)}): start the "
                       "server with `dualvad serve --allow-stream-host 10.0.0.7` or add it to the app's "
                       "allowed_stream_hosts")
    assert "needs a scheme and a host" in _error(server.post("/v1/streams", json={"url": "/dev/video0"}), 422,
                                                 "invalid_url")
    assert "nme" in _error(server.post("/v1/streams", json={"url": "rtsp://127.0.0.1/x", "nme": "typo"}), 422,
                           "invalid_option")
    assert "not valid JSON" in _error(server.post("/v1/streams", content=b"{", headers={
        "content-type": "application/json"}), 400, "bad_json")
    assert "since_s" in _error(server.get("/v1/streams/none/timeline", params={"since_s": "soon"}), 422,
                               "invalid_option")
    assert StreamList.model_validate(server.get("/v1/streams").json()).streams == before


def test_a_stream_is_added_adopted_listed_read_and_deleted_and_its_sse_ends(server):
    """A camera that does not answer (nothing listens on the port): the stream is still added (201), adopted
    by the Streams replica, listed; deleting it ends its SSE with ``event: end`` and it is gone (404)."""
    url = f"rtsp://127.0.0.1:{free_port()}/gone"
    response = server.post("/v1/streams", json={"url": url, "name": "gone"})
    assert response.status_code == 201, response.text
    added = StreamInfo.model_validate(response.json())
    assert (added.name, added.url, added.state, added.events) == ("gone", url, "pending", 0)
    stream_id = added.stream_id
    adopted = _until(lambda: (info := _stream(server, stream_id)).replica and info, ADOPTION_BOUND_S,
                     "adopted by a Streams replica")
    assert adopted.adoptions == 1 and adopted.state != "pending"
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
