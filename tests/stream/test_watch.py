"""``dualvad watch`` end to end: a generated explosion followed with the shared evaluated run, its events as
JSON lines; SIGTERM closes the open event; a URL of another scheme is refused."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime

from dualvad.cli import main
from dualvad.stream import watch as watch_module

from media import STREAM_EXPLOSION

SCORER_ONLY = ["stream.vlm=false", "stream.alert_threshold=0.7"]  # test_stream_detector.py says why 0.7


def test_watch_writes_each_closed_event_as_a_json_line(evaluated_copy, stream_videos, tmp_path, capsys):
    _, run, _ = evaluated_copy
    path, (first, _) = stream_videos[STREAM_EXPLOSION]
    events = tmp_path / "events.jsonl"
    code = main(["watch", str(path), "--run", run.uri, "--events", str(events), "--name", "gate",
                 *SCORER_ONLY])
    assert code == 0
    (line,) = [json.loads(text) for text in events.read_text().splitlines()]
    assert {"event_id", "start_s", "end_s", "start_time", "end_time", "score", "category",
            "explanation"} <= set(line)
    assert line["stream_id"] == "gate" and line["state"] == "closed" and line["start_s"] < line["end_s"]
    assert abs(line["start_s"] - first / 15) <= 2.0
    assert datetime.fromisoformat(line["start_time"]).tzinfo is not None
    err = capsys.readouterr().err
    assert f"event {line['event_id']} opened" in err and "ended: 24 segments, 1 events" in err


def test_sigterm_closes_the_open_event_and_exits(evaluated_copy, stream_videos, tmp_path, monkeypatch,
                                                 capsys):
    """SIGTERM, sent when the event opens, stops the watcher before the video's end: it closes the event and
    writes it before returning 0."""
    _, run, _ = evaluated_copy
    mp4, _ = stream_videos[STREAM_EXPLOSION]
    emit = watch_module.ConsoleSink.emit

    def emit_then_terminate(self, kind, event):
        emit(self, kind, event)
        if kind == "open":
            os.kill(os.getpid(), signal.SIGTERM)  # to this process: the watcher's handler stops it

    monkeypatch.setattr(watch_module.ConsoleSink, "emit", emit_then_terminate)
    events = tmp_path / "events.jsonl"
    before = signal.getsignal(signal.SIGTERM)
    code = main(["watch", str(mp4), "--run", run.uri, "--events", str(events), *SCORER_ONLY])
    assert code == 0
    (line,) = [json.loads(text) for text in events.read_text().splitlines()]
    assert line["state"] == "closed"
    assert "dualvad watch: stopped:" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # the handler before the watcher is back


def test_a_url_of_another_scheme_is_refused_by_name(evaluated_copy, capsys):
    _, run, _ = evaluated_copy
    assert main(["watch", "ftp://camera/live", "--run", run.uri]) == 2
    err = capsys.readouterr().err
    assert "'ftp'" in err and "rtsp://" in err
