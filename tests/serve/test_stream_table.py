"""Serve's live streams without Ray: which URLs are allowed, the registry's table (adoption, orphans, events
deduplicated by id, timelines shifted to the stream's clock) and the autoscaling policy, with exact values."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dualvad.serve.errors import ServeError
from dualvad.serve.stream_table import (
    Adoption,
    StreamLimitError,
    StreamTable,
    check_stream_url,
    host_allowed,
    redacted,
)
from dualvad.serve.streams import streams_policy

SCHEMES = ("rtsp", "rtsps", "http", "https")


@pytest.mark.parametrize(("host", "allowed", "expected"), [
    ("127.0.0.1", ["127.0.0.1"], True),
    ("cam.local", ["CAM.local."], True),
    ("cam.local", ["cam"], False),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("11.1.2.3", ["10.0.0.0/8"], False),
    ("::1", ["::1/128"], True),
    ("::1", ["127.0.0.0/8"], False),
    ("ten.example", ["10.0.0.0/8"], False),  # a name is never resolved into a network
    ("anything.example", ["*"], True),
    ("127.0.0.1", [], False),
])
def test_host_allowed(host, allowed, expected):
    assert host_allowed(host, allowed) is expected


def test_an_allowed_url_is_returned_stripped():
    assert check_stream_url(" rtsp://10.0.0.7:8554/cam ", SCHEMES, ["10.0.0.0/8"]) == "rtsp://10.0.0.7:8554/cam"
    assert check_stream_url("HTTP://[::1]:9/live.m3u8", SCHEMES, ["::1"]) == "HTTP://[::1]:9/live.m3u8"


@pytest.mark.parametrize(("url", "status", "message"), [
    ("ftp://127.0.0.1/x", 403, "stream URL scheme 'ftp' is not allowed (allowed: rtsp, rtsps, http, https): "
                              "add it to the app's allowed_stream_schemes"),
    ("file:///etc/passwd", 422, "the stream URL needs a scheme and a host, like rtsp://camera.local/stream; "
                                "got 'file:///etc/passwd'"),
    ("rtsp://169.254.169.254/latest", 403, "stream host '169.254.169.254' is not allowed (allowed: "
                                           "127.0.0.1): start the server with `dualvad serve "
                                           "--allow-stream-host 169.254.169.254` or add it to the app's "
                                           "allowed_stream_hosts"),
    ("camera.local/stream", 422, "the stream URL needs a scheme and a host, like rtsp://camera.local/stream; "
                                 "got 'camera.local/stream'"),
    ("rtsp://127.0.0.1:port/x", 422, "the stream URL cannot be parsed (Port could not be cast to integer "
                                     "value as 'port')"),
    ("rtsp://127.0.0.1/a b", 422, "the stream URL must be 1 to 2048 characters without spaces or control "
                                  "characters, like rtsp://camera.local/stream"),
])
def test_a_url_outside_the_settings_is_refused_naming_what_to_change(url, status, message):
    with pytest.raises(ServeError) as caught:
        check_stream_url(url, SCHEMES, ["127.0.0.1"])
    assert (caught.value.status, caught.value.message) == (status, message)


def test_a_password_is_never_shown():
    assert redacted("rtsp://admin:s3cret@10.0.0.7:554/h264") == "rtsp://admin:***@10.0.0.7:554/h264"
    assert redacted("rtsp://10.0.0.7/h264") == "rtsp://10.0.0.7/h264"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(event_id: str, start_s: float, end_s: float, state: str = "open") -> dict:
    return {"event_id": event_id, "start_s": start_s, "end_s": end_s, "state": state, "extra": {}}


def test_streams_are_adopted_up_to_a_replicas_room_and_deleted_ones_stopped():
    clock = Clock()
    table = StreamTable(orphan_s=5.0, clock=clock)
    ids = [table.add(f"rtsp://127.0.0.1/{n}", f"cam{n}", limit=3)["stream_id"] for n in range(3)]
    with pytest.raises(StreamLimitError, match="limit of 3 streams"):
        table.add("rtsp://127.0.0.1/4", "cam4", limit=3)
    clock.now += 2
    first = table.report("A", {}, capacity=2)
    adopted = [Adoption(ids[n], f"rtsp://127.0.0.1/{n}", f"cam{n}", 2.0) for n in range(3)]
    assert first == {"stop": [], "wanted": 3, "adopt": adopted[:2]}
    assert table.report("B", {}, capacity=2)["adopt"] == adopted[2:]
    live = {"state": "live", "lag_s": 0.1}
    assert table.report("A", {ids[0]: live, ids[1]: live}, 2) == {"stop": [], "adopt": [], "wanted": 3}
    assert table.get(ids[0])["state"] == "live" and table.get(ids[0])["replica"] == "A"
    assert table.remove(ids[1])["state"] == "deleted" and table.remove(ids[1]) is None
    assert table.report("A", {ids[0]: live, ids[1]: live}, capacity=2) == {"stop": [ids[1]], "adopt": [],
                                                                           "wanted": 2}


def test_a_silent_replicas_streams_are_re_adopted_and_no_event_is_lost_or_doubled():
    """Replica A follows a stream, opens event e1 and closes e0, then goes silent; after orphan_s, B adopts
    the stream: e1 is closed once by the table (A never closed it), B's reports of e0 and e1 are dropped as
    duplicates, B's new event e2 counts, and A's late report is refused (B owns the stream)."""
    clock = Clock()
    table = StreamTable(orphan_s=5.0, clock=clock)
    stream = table.add("rtsp://127.0.0.1/cam", "cam", limit=4)["stream_id"]
    table.report("A", {}, capacity=4)
    assert table.record(stream, "A", "open", _event("e0", 1.0, 1.5))
    assert table.record(stream, "A", "close", _event("e0", 1.0, 3.0, "closed"))
    assert table.record(stream, "A", "open", _event("e1", 4.0, 4.5))
    clock.now += 4  # A's last report was at 1000: silent for 4 s, not yet an orphan
    assert table.report("B", {}, capacity=4)["adopt"] == []
    clock.now += 2  # 6 s
    assert table.report("B", {}, 4)["adopt"] == [Adoption(stream, "rtsp://127.0.0.1/cam", "cam", 6.0)]
    assert not table.record(stream, "A", "close", _event("e1", 4.0, 5.0, "closed"))  # too late: B owns it
    assert not table.record(stream, "B", "open", _event("e0", -5.0, -4.5))
    assert not table.record(stream, "B", "close", _event("e1", -2.0, 0.5, "closed"))
    assert table.record(stream, "B", "open", _event("e2", 1.0, 1.5))
    assert [(kind, event["event_id"], event["state"], event["start_s"]) for _, kind, event in
            table.messages_after(stream, 0)] == [("open", "e0", "open", 1.0), ("close", "e0", "closed", 1.0),
                                                 ("open", "e1", "open", 4.0), ("close", "e1", "closed", 4.0),
                                                 ("open", "e2", "open", 7.0)]
    assert table.messages_after(stream, 0)[3][2]["extra"] == {"closed_by": "replica lost"}
    summary = table.get(stream)
    assert (summary["replica"], summary["adoptions"], summary["events"], summary["duplicates_dropped"]) == \
        ("B", 2, 3, 2)
    assert table.seq_of(stream, "e1") == table.messages_after(stream, 0)[3][0]
    assert table.messages_after(stream, table.seq_of(stream, "e1"))[0][2]["event_id"] == "e2"
    assert table.timeline(stream, 0.0)["gaps"] == [[0.0, 6.0]]  # A's last report (at 0 s) to B's adoption


def test_timelines_are_appended_on_the_streams_clock():
    clock = Clock()
    table = StreamTable(orphan_s=5.0, clock=clock)
    stream = table.add("rtsp://127.0.0.1/cam", "cam", limit=4)["stream_id"]
    clock.now += 10
    table.report("A", {}, capacity=4)  # adopted 10 s after it was added
    table.add_timeline(stream, "A", {"segments": [{"start_s": 0.0, "end_s": 1.0, "score": 0.2},
                                                  {"start_s": 1.0, "end_s": 2.0, "score": 0.9}],
                                     "gaps": [[1.5, 1.8]]})
    table.add_timeline(stream, "A", {"segments": [{"start_s": 1.0, "end_s": 2.0, "score": 0.9},
                                                  {"start_s": 2.0, "end_s": 3.0, "score": 0.4}],
                                     "gaps": [[2.5, 2.6]]})
    table.add_timeline(stream, "A", {"segments": [], "gaps": [[2.5, 2.7]]})  # the open gap grew
    clock.now += 3
    timeline = table.timeline(stream, 11.0)
    assert timeline["now_s"] == 13.0
    assert timeline["segments"] == [{"start_s": 11.0, "end_s": 12.0, "score": 0.9},
                                    {"start_s": 12.0, "end_s": 13.0, "score": 0.4}]
    assert timeline["gaps"] == [[11.5, 11.8], [12.5, 12.7]]


def test_the_policy_asks_for_the_replicas_the_wanted_streams_need_within_bounds():
    def context(reported, target=1, low=1, high=4):
        metrics = {"replicas_needed": reported} if reported is not None else {}
        return SimpleNamespace(aggregated_metrics=metrics,
                               target_num_replicas=target, capacity_adjusted_min_replicas=low,
                               capacity_adjusted_max_replicas=high)

    assert streams_policy(context({"r1": 3.0, "r2": 2.0})) == (3, {})
    assert streams_policy(context({"r1": 9.0})) == (4, {})
    assert streams_policy(context({"r1": 0.0})) == (1, {})
    assert streams_policy(context({"r1": 0.0}, low=0)) == (0, {})  # no stream wanted: no replica
    assert streams_policy(context(None, target=2)) == (2, {})
