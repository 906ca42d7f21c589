"""Event delivery: JSON Lines with deduplication, a webhook over loopback HTTP, in-process subscribers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dualvad.stream.events import Event, JsonlSink, Subscribers, WebhookSink, event_id, iso_time

from loopback import free_port


def _event(number: int) -> Event:
    return Event(stream_id="cam", event_id=event_id("rtsp://cam", number), start_s=float(number),
                 end_s=number + 1.0, start_time=iso_time(0.0), end_time=iso_time(1.0), score=0.9,
                 peak_scorer_score=0.9, category="Explosion", category_probability=0.8)


def test_event_ids_hash_the_stream_and_the_first_segment() -> None:
    assert event_id("rtsp://cam", 7) == event_id("rtsp://cam", 7)
    assert len({event_id("rtsp://cam", 7), event_id("rtsp://cam", 8), event_id("rtsp://other", 7)}) == 3
    assert len(event_id("rtsp://cam", 7)) == 16


def test_iso_times_carry_a_time_zone() -> None:
    assert iso_time(0.0).endswith(("+00:00", "Z")) or iso_time(0.0)[-6] in "+-"


def test_the_jsonl_file_keeps_each_closed_event_once_across_sinks(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    first = JsonlSink(str(path))
    first.emit("open", _event(1))  # the alert is not a line: the closed event is
    first.emit("close", _event(1))
    first.close()
    second = JsonlSink(str(path))  # a restarted watcher
    second.emit("close", _event(1))
    second.emit("close", _event(2))
    second.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event_id"] for line in lines] == [_event(1).event_id, _event(2).event_id]
    assert {"event_id", "start_s", "end_s", "start_time", "end_time", "score", "category",
            "explanation"} <= set(lines[0])


def test_a_file_that_is_not_an_events_file_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match=r"notes.txt:1 is not an event line.*--events"):
        JsonlSink(str(path))
    assert path.read_text() == "hello\n"  # nothing lost


class _Hook(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` POSTs, then 200; keeps the bodies."""

    failures = 0
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        status = 503 if len(type(self).bodies) <= type(self).failures else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook():
    handler = type("Hook", (_Hook,), {"failures": 2, "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def test_the_webhook_retries_with_backoff_until_it_is_delivered(hook) -> None:
    url, handler = hook
    sink = WebhookSink(url, retries=3, backoff_s=0.01)
    sink.emit("open", _event(1))
    sink.close()
    assert (sink.stats.sent, sink.stats.retries, sink.stats.failed, sink.stats.dropped) == (1, 2, 0, 0)
    assert [body["type"] for body in handler.bodies] == ["open"] * 3
    assert handler.bodies[-1]["event"]["event_id"] == _event(1).event_id


def test_a_dead_webhook_fails_after_its_retries_and_never_blocks_emit() -> None:
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/nobody", retries=2, backoff_s=0.01, timeout_s=1.0)
    sink.emit("close", _event(1))
    sink.close()
    assert (sink.stats.sent, sink.stats.retries, sink.stats.failed) == (0, 2, 1)


def test_a_slow_webhook_drops_what_its_queue_cannot_hold() -> None:
    """Delivery is held on a gate: the first event is being posted, two wait in the queue of 2, and the
    fourth and fifth are dropped and counted; emit returned at once every time."""
    gate, posting = threading.Event(), threading.Event()
    posted = []

    def post(url: str, body: dict, timeout_s: float) -> int:
        posting.set()
        assert gate.wait(10)
        posted.append(body["event"]["start_s"])
        return 200

    sink = WebhookSink("http://unused", capacity=2, post=post)
    sink.emit("close", _event(1))
    assert posting.wait(10)  # the first is out of the queue, being posted
    for number in (2, 3, 4, 5):
        sink.emit("close", _event(number))
    assert sink.stats.dropped == 2
    gate.set()
    sink.close()
    assert posted == [1.0, 2.0, 3.0] and sink.stats.sent == 3


def test_a_subscriber_that_falls_behind_loses_its_oldest_events() -> None:
    subscribers = Subscribers(capacity=2)
    fast, slow = subscribers.subscribe(), subscribers.subscribe()
    subscribers.emit("open", _event(1))
    assert fast.get_nowait()[1]["start_s"] == 1.0
    subscribers.emit("open", _event(2))
    subscribers.emit("open", _event(3))
    assert [slow.get_nowait()[1]["start_s"] for _ in range(2)] == [2.0, 3.0]
    assert subscribers.dropped == 1
    subscribers.unsubscribe(fast)
    subscribers.emit("close", _event(4))
    assert slow.get_nowait()[0] == "close" and fast.qsize() == 2  # 2 and 3, nothing after unsubscribing
