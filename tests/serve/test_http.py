"""The serve app over real HTTP on the session's local Ray: one app for tests/serve (``server``, tiny VLM, the
session's trained scorer; tests/serve/conftest.py), generated videos, every bad input, batching and load
shedding."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from dualvad.serve.schemas import DetectResponse, ErrorResponse
from dualvad.serve.settings import AppArgs

from browser import CHROMIUM, MISSING, assert_not_blank, live_page
from faultlog import record_fault
from objectstore import GatedS3, moto_s3, s3_client
from raykill import descendants_named
from serveapp import (
    ANALYZER_QUEUE,
    ANALYZER_SLOTS,
    APP_NAME,
    BUDGET,
    GATE_BUCKET,
    GATE_KEY,
    MAX_DURATION_S,
    MAX_UPLOAD,
    READ_TIMEOUT_S,
)


@pytest.fixture(scope="module")
def gate(media):
    """A video on a real S3 API (moto on loopback) read through :class:`GatedS3`: requests for it stay in
    the Analyzer until the test releases the gate."""
    with moto_s3(GATE_BUCKET) as endpoint:
        s3_client(endpoint).upload_file(str(media["gated"]), GATE_BUCKET, GATE_KEY)
        with GatedS3(endpoint) as proxy:
            yield proxy


def _upload(client: httpx.Client, path: Path, **options) -> httpx.Response:
    data = {key: str(value) for key, value in options.items()}
    return client.post("/v1/detect", files={"file": (path.name, path.read_bytes(), "video/mp4")}, data=data)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = ErrorResponse.model_validate(response.json())
    assert body.error.code == code and body.request_id == response.headers["x-request-id"]
    return body.error.message


def _detection(response: httpx.Response) -> DetectResponse:
    assert response.status_code == 200, response.text
    return DetectResponse.model_validate(response.json())


def test_health_info_docs_and_page(server, evaluated_copy):
    assert server.get("/healthz").json() == {"status": "ok"}
    info = server.get("/v1/info").json()
    assert info["settings"]["max_upload_bytes"] == MAX_UPLOAD and info["versions"]["ray"]
    assert info["models"]["judge"]["vlm"] == str(evaluated_copy[2])
    assert info["models"]["analyzer"]["settings"]["sample"]["budget"] == BUDGET
    schema = server.get("/openapi.json").json()
    assert "DetectResponse" in schema["components"]["schemas"]
    assert "/v1/detect" in schema["paths"] and server.get("/docs").status_code == 200
    page = server.get("/").text
    assert '<svg id="timeline"' in page and "{{" not in page  # the template's variables are filled
    assert 'id="threshold" min="0" max="1" step="0.05" placeholder="run\'s verdict"' in page


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_the_page_uploads_a_video_and_shows_its_timeline(server, media, tmp_path):
    """In headless Chromium: choose a file on ``/``, press Detect, and the page draws the timeline (one bar
    per segment, one dot per sampled frame), the thumbnails and the clips of the response."""
    path = Path(media["records"][0].path)
    expected = _detection(_upload(server, path, thumbnails=6))
    with live_page() as page:
        page.goto(f"{server.base_url}/")
        page.set_input_files("#file", str(path))
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert page.locator("#error").inner_text() == ""
        assert page.locator("#timeline rect.segment").count() == len(expected.segments)
        assert page.locator("#timeline circle.frame").count() == BUDGET
        assert page.locator("#thumbs img").count() == len(expected.thumbnails) > 0
        assert page.locator("#clips li").count() == len(expected.clips)
        verdict = page.locator("#verdict").inner_text()
        assert f"video score {expected.video_score:.3f}" in verdict, verdict
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert_not_blank(tmp_path / "page.png")


def test_anomalous_video_scores_above_normal_ones(server, evaluated_copy, media):
    """The session corpus's test videos, unseen in training: online segment scores equal the score
    stage's, and the most anomalous-looking anomalous video scores above the calmest normal one. Scored by
    the segment scorer's peak: the VLM here is a random tiny model, whose video_score means nothing."""
    from dualvad import schema as S
    from dualvad.pipeline.sample import segments_with_scores
    from dualvad.rundir import open_run

    config, _, _ = evaluated_copy
    table = segments_with_scores(open_run(config.run)).to_pandas().query("split == 'test'")
    offline = {vid: group.sort_values(S.SEGMENT_INDEX) for vid, group in table.groupby(S.VIDEO_ID)}
    peak = {vid: group[S.SCORE].max() for vid, group in offline.items()}
    anomalous = max((v for v, g in offline.items() if g[S.LABEL].iloc[0] != "Normal"), key=peak.get)
    normal = min((v for v, g in offline.items() if g[S.LABEL].iloc[0] == "Normal"), key=peak.get)
    results = {}
    for video_id in (anomalous, normal):
        result = _detection(_upload(server, Path(config.corpus, "videos", video_id), thumbnails=2))
        scorer = [s.scorer_score for s in result.segments]
        assert scorer == pytest.approx(list(offline[video_id][S.SCORE]), abs=1e-5)
        assert [s.index for s in result.segments] == list(range(len(scorer)))
        assert len(result.frames) == BUDGET and len(result.thumbnails) == 2
        starts = [segment.start_frame for segment in result.segments]
        assert starts == sorted(starts) and result.segments[-1].end_frame == result.video.frames
        assert result.clips and {"read_input", "total"} <= set(result.timings_ms)
        results[video_id] = max(scorer)
        # the run's verdict (the scorer alone: the shared run's 2 validation videos are too few to fit)
        assert result.verdict.source == "scorer-only" and result.verdict.threshold == 0.5
        assert result.video_score == pytest.approx(results[video_id], abs=1e-4)
        assert result.is_anomalous == (result.video_score >= 0.5)
        assert result.category is not None and 0.0 <= result.category_probability <= 1.0
    assert results[anomalous] > results[normal], results
    assert results[anomalous] > 0.7  # the clearest anomaly: the verdict calls it so, whatever the VLM says


def test_detect_command_writes_the_endpoints_output_and_records_a_bad_file(server, media, evaluated_copy,
                                                                          tmp_path):
    """`dualvad detect` (plain Python, no Ray) on a folder of generated videos and one text file: the same
    detection per video as POST /v1/detect, the bad file a line with its error, exit 1."""
    import json

    from dualvad.cli import main

    config, _, tiny = evaluated_copy
    folder = tmp_path / "mine"
    folder.mkdir()
    for record in media["records"][:2]:
        os.symlink(record.path, folder / Path(record.path).name)
    out = tmp_path / "detections.jsonl"
    code = main(["detect", str(folder), str(media["text"]), "--run", config.run, "--vlm", str(tiny),
                 "--out", str(out), "eval.max_new_tokens=4"])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and len(lines) == 3
    assert lines[2]["video_path"] == str(media["text"]) and "not a decodable video" in lines[2]["error"]
    for line in lines[:2]:
        online = _detection(_upload(server, Path(line["video_path"]))).model_dump()
        assert line["video_score"] == online["video_score"] and line["video"] == online["video"]
        assert [f["p_yes"] for f in line["frames"]] == pytest.approx([f["p_yes"] for f in online["frames"]],
                                                                     abs=1e-5)
        assert [s["scorer_score"] for s in line["segments"]] == pytest.approx(
            [s["scorer_score"] for s in online["segments"]], abs=1e-6)
        assert [c["explanation"] for c in line["clips"]] == [c["explanation"] for c in online["clips"]]
        assert line["models"]["vlm"] == str(tiny)


def test_json_uri_gives_the_same_result_as_the_upload(server, media):
    path = Path(media["records"][0].path)
    by_upload = _detection(_upload(server, path))
    by_uri = _detection(server.post("/v1/detect", json={"uri": str(path)}))
    assert by_uri.video_score == by_upload.video_score
    assert [f.p_yes for f in by_uri.frames] == [f.p_yes for f in by_upload.frames]


@pytest.mark.parametrize("case", ["empty_body", "empty_file", "text", "truncated", "empty_upload_json",
                                  "long", "short", "strategy", "budget_type", "unknown_option", "outside",
                                  "traversal", "symlink", "missing", "folder", "too_large_declared",
                                  "too_large_streamed", "stalled_upload", "huge_header",
                                  "nul_uri", "broken_multipart"])
def test_bad_input_gets_its_status_and_message_and_the_server_lives(server, media, case):
    root = media["root"]
    if case == "empty_body":
        assert "multipart/form-data" in _error(server.post("/v1/detect"), 400, "empty_body")
    elif case == "empty_file":
        assert "0 bytes" in _error(_upload(server, media["empty"]), 400, "empty_body")
    elif case in ("text", "truncated"):
        message = _error(_upload(server, media[case]), 422, "invalid_video")
        assert "not a decodable video" in message or "decode" in message, message
        assert "dualvad-serve-" not in message  # the replica's temp folder is not the client's business
    elif case == "empty_upload_json":
        assert "uri" in _error(server.post("/v1/detect", json={"budget": 3}), 400, "no_uri")
    elif case == "long":
        message = _error(server.post("/v1/detect", json={"uri": str(media["long"])}), 422, "video_too_long")
        assert f"limit of {MAX_DURATION_S:g} s" in message
    elif case == "short":
        message = _error(_upload(server, media["short"]), 422, "video_too_short")
        assert f"{BUDGET - 3} frames" in message and f"budget {BUDGET}" in message
    elif case == "strategy":
        message = _error(_upload(server, media["short"], strategy="bogus"), 422, "invalid_option")
        assert "strategy" in message and all(name in message for name in ("focused", "uniform", "cdf"))
    elif case == "budget_type":
        assert "budget" in _error(_upload(server, media["short"], budget="many"), 422, "invalid_option")
    elif case == "unknown_option":
        message = _error(server.post("/v1/detect", json={"uri": str(media["short"]), "budgett": 4}), 422,
                         "unknown_option")
        assert "budgett" in message and "budget" in message
    elif case in ("outside", "traversal", "symlink"):
        uri = {"outside": "/etc/hostname", "traversal": f"{root}/../../etc/hostname",
               "symlink": str(root / "escape.mp4")}[case]
        response = server.post("/v1/detect", json={"uri": uri})
        message = _error(response, 403, "forbidden_uri")
        assert "hostname" not in response.text and "allowed roots" in message
    elif case in ("missing", "folder"):
        uri = str(root / "no-such.mp4") if case == "missing" else str(root / "broken")
        message = _error(server.post("/v1/detect", json={"uri": uri}), 404, "not_found")
        assert uri in message and ("a folder" if case == "folder" else "nothing") in message
    elif case == "too_large_declared":
        big = np.random.default_rng(0).integers(0, 256, MAX_UPLOAD + 1000, dtype=np.uint8).tobytes()
        response = server.post("/v1/detect", files={"file": ("big.mp4", big, "video/mp4")})
        assert str(MAX_UPLOAD) in _error(response, 413, "too_large")
    elif case == "too_large_streamed":
        sent = []

        def body():  # chunked, no Content-Length: refused while streaming
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.mp4\"\r\n\r\n"
            for _ in range(40):
                sent.append(1)
                yield b"\0" * 256 * 1024
            yield b"\r\n--b--\r\n"

        try:
            response = server.post("/v1/detect", content=body(),
                                   headers={"content-type": "multipart/form-data; boundary=b"})
        except httpx.HTTPError as error:  # the server may close the connection mid-upload; still refused
            pytest.fail(f"no 413 response: {error!r}")
        _error(response, 413, "too_large")
    elif case == "stalled_upload":
        status, body = _stalled_upload(server)
        assert status == 408 and "did not arrive within" in body and f"{READ_TIMEOUT_S:g} s" in body, body
    elif case == "nul_uri":  # found by the fuzzing below: os.path refused it with a ValueError (a 500)
        assert "NUL" in _error(server.post("/v1/detect", json={"uri": "\u0000"}), 422, "invalid_option")
    elif case == "broken_multipart":  # found by the fuzzing below: Starlette's parser error was a 500
        response = server.post("/v1/detect", content=b"--b\r\nnot a part header\r\n",
                               headers={"content-type": "multipart/form-data; boundary=b"})
        assert "multipart" in _error(response, 400, "bad_multipart")
    elif case == "huge_header":  # 1 MiB in one header: answered (accepted or refused), never a 5xx or a hang
        response = server.get("/healthz", headers={"x-padding": "a" * 2**20})
        assert response.status_code < 500, response.status_code
    good = _detection(_upload(server, Path(media["records"][0].path)))  # the replicas still serve
    assert len(good.frames) == BUDGET


def test_concurrent_requests_get_the_answers_they_get_alone(server, gate):
    """Eight requests held together inside the Analyzer (their video is read through the gate) and released at
    once: each answer equals the same request's alone, and the Judge judged each of them once. How Serve
    groups them into batches depends on when each analysis ends: printed here; batching itself is checked
    exactly in test_the_judge_batches_the_requests_that_arrive_together."""
    uri = gate.uri(GATE_BUCKET, GATE_KEY)
    gate.release()
    alone = _detection(server.post("/v1/detect", json={"uri": uri}))
    gate.close()
    before = server.get("/v1/info").json()["models"]["judge"]["batch_sizes"]
    with ThreadPoolExecutor(ANALYZER_SLOTS) as pool:
        pending = [pool.submit(server.post, "/v1/detect", json={"uri": uri}) for _ in range(ANALYZER_SLOTS)]
        try:
            gate.wait_for(ANALYZER_SLOTS)
        finally:
            gate.release()
        results = [_detection(future.result()) for future in pending]
    after = server.get("/v1/info").json()["models"]["judge"]["batch_sizes"]
    new = {int(size): count - before.get(size, 0) for size, count in after.items()
           if count > before.get(size, 0)}
    print(f"\njudge batches of {ANALYZER_SLOTS} concurrent requests ({{size: count}}): {new}")
    assert sum(size * count for size, count in new.items()) == ANALYZER_SLOTS, new
    for result in results:
        assert result.video_score == alone.video_score
        assert [f.p_yes for f in result.frames] == pytest.approx([f.p_yes for f in alone.frames], abs=1e-5)
        assert [c.explanation for c in result.clips] == [c.explanation for c in alone.clips]


def test_the_judge_batches_the_requests_that_arrive_together(server, evaluated_copy, media):
    """A Judge deployment of its own (a second app, called through its handle) whose batch wait is far longer
    than the test: requests sent together are one batch of exactly ``max_batch_size``, and each answer
    equals the request's frames judged alone, in this process."""
    from ray import serve

    from dualvad.detector import FrameJudge, SegmentAnalyzer
    from dualvad.serve.deployments import Judge

    config, _, tiny = evaluated_copy
    size = 4
    args = AppArgs(run=config.run, vlm=str(tiny), max_new_tokens=4, max_batch_size=size,
                   batch_wait_timeout_s=120.0)  # a generous bound: the batch closes because it is full
    analyzer = SegmentAnalyzer.from_run(config.run)
    frames = [list(analyzer.analyze(record.path).jpegs) for record in media["records"][:size]]
    frame_judge = FrameJudge.from_run(config.run, vlm=str(tiny), max_new_tokens=4)
    alone = [frame_judge.judge(jpegs, True) for jpegs in frames]
    judge = serve.run(Judge.options(ray_actor_options={"num_cpus": 0.25}).bind(args.model_dump()),
                      name="dualvad-batching", route_prefix=None)
    try:
        pending = [judge.judge.remote(f"r{index}", jpegs, True) for index, jpegs in enumerate(frames)]
        judged = [response.result(timeout_s=120) for response in pending]
        assert judge.info.remote().result(timeout_s=60)["batch_sizes"] == {str(size): 1}
    finally:
        serve.delete("dualvad-batching")
    for one, batched in zip(alone, judged, strict=True):
        assert batched.explanations == one.explanations
        assert batched.clip_scores == pytest.approx(one.clip_scores, abs=1e-4)
        np.testing.assert_allclose(batched.frame_scores, one.frame_scores, atol=1e-5)


def test_a_full_queue_is_503_with_retry_after_and_drains(server, gate):
    """Exact on any machine: ANALYZER_SLOTS requests are held inside the Analyzer (the gate holds their
    video), ANALYZER_QUEUE more wait in Serve's queue, and each of the ``shed_count`` requests past those is
    answered 503 with Retry-After while the others still wait. Released, every held and queued request is
    answered 200."""
    uri, shed_count = gate.uri(GATE_BUCKET, GATE_KEY), 3
    gate.close()

    def post() -> httpx.Response:
        return server.post("/v1/detect", json={"uri": uri, "explain": False})

    with ThreadPoolExecutor(ANALYZER_SLOTS + ANALYZER_QUEUE + shed_count) as pool:
        try:
            held = [pool.submit(post) for _ in range(ANALYZER_SLOTS)]
            gate.wait_for(ANALYZER_SLOTS)  # every Analyzer slot is taken
            queued = [pool.submit(post) for _ in range(ANALYZER_QUEUE + shed_count)]
            shed = _first_answered(queued, shed_count)
            assert gate.waiting == ANALYZER_SLOTS and not any(future.done() for future in held)
            for response in (future.result() for future in shed):
                assert response.headers["retry-after"].isdigit()
                assert "queue is full" in _error(response, 503, "overloaded")
        finally:  # a failed check must not leave 16 requests waiting for the server's timeout
            gate.release()
        waited = [future.result() for future in held + queued if future not in shed]
    assert [response.status_code for response in waited] == [200] * (ANALYZER_SLOTS + ANALYZER_QUEUE), \
        [(response.status_code, response.text[:200]) for response in waited if response.status_code != 200]
    _detection(post())  # drained: a new request is served


def _first_answered(futures: list[Future], count: int, timeout_s: float = 120.0) -> list[Future]:
    """The first ``count`` of ``futures`` to finish, once they have; fails if fewer finish within
    ``timeout_s``, or if more than ``count`` have finished by then."""
    deadline = time.monotonic() + timeout_s
    while len(done := [future for future in futures if future.done()]) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{len(done)} of {len(futures)} requests answered within {timeout_s:g} s, " \
                              f"expected {count} shed at once"
        wait([future for future in futures if not future.done()], remaining, FIRST_COMPLETED)
    assert len(done) == count, [future.result().status_code for future in done]
    return done


def _stalled_upload(client: httpx.Client) -> tuple[int, str]:
    """A multipart upload whose body stops after its first bytes, the connection left open: (the status the
    server answers with, the response body). Raw socket: an HTTP client would wait to send the rest."""
    host, port = client.base_url.host, client.base_url.port
    head = (f"POST /v1/detect HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\n' + b"\0" * 1000
    with socket.create_connection((host, port), timeout=READ_TIMEOUT_S + 30) as sock:
        sock.sendall(head.encode() + part)
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        headers = dict(line.decode().rstrip("\r\n").lower().split(": ", 1)
                       for line in iter(reader.readline, b"\r\n"))
        body = reader.read(int(headers.get("content-length", 0))).decode(errors="replace")
    return status, body


STREAM_OPS = {"POST /v1/streams", "GET /v1/streams", "GET /v1/streams/{stream_id}",
              "DELETE /v1/streams/{stream_id}", "GET /v1/streams/{stream_id}/timeline",
              "GET /v1/streams/{stream_id}/events"}
MALFORMABLE = {"POST /v1/detect", "POST /v1/streams", "GET /v1/streams/{stream_id}/timeline"}


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_never_get_a_5xx_and_every_error_is_json(server, mode):
    """schemathesis draws requests from the app's own OpenAPI document, valid ones (``positive``) and
    malformed ones (``negative``: wrong types, unknown keys, broken bodies) for every operation: none gets a
    server error, and every error carries the JSON error body with its request id. Bounded and repeatable:
    a fixed number of examples per operation, derandomized (the same requests every run)."""
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {"POST /v1/detect", "GET /v1/info", "GET /healthz", *STREAM_OPS}
    statuses: Counter[int] = Counter()
    for operation in operations:
        if mode == "negative" and operation.label not in MALFORMABLE:
            continue  # no parameters, or only a path's string: nothing to make malformed
        @settings(max_examples=12, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=str(server.base_url), timeout=60)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text)
            if response.status_code >= 400:
                body = ErrorResponse.model_validate(response.json())
                assert [body.request_id] == response.headers["x-request-id"], response.text  # values: lists

        check()
    print(f"\nfuzzing ({mode}): statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= len(operations)


@pytest.mark.parametrize("deployment", ["Analyzer", "Judge"])
def test_a_killed_replica_fails_only_its_requests_in_flight_and_serve_recovers(server, media, deployment):
    """Issue 17, item 5: a bounded load (2 clients, 10 requests each) while one replica of ``deployment`` is
    SIGKILLed. Every request is answered (none hangs past the client's timeout); a failed one is a 5xx with
    the JSON error body and its request id; no more fail than were in flight at the kill; Serve starts a new
    replica and the last requests of both clients succeed. The counts and the recovery time (kill to the
    first success of a request sent after it) are printed for bench/faults.py."""
    uri, clients, per_client = str(media["gated"]), 2, 10  # a short video: cheap requests
    killed: dict[str, float] = {}
    log: list[tuple[float, float, int, str]] = []  # (sent, answered, status, request id)

    def client(index: int) -> None:
        for number in range(per_client):
            sent = time.perf_counter()
            response = server.post("/v1/detect", json={"uri": uri, "explain": False})
            answered = time.perf_counter()
            log.append((sent, answered, response.status_code, response.headers.get("x-request-id")))
            if response.status_code != 200:
                body = ErrorResponse.model_validate(response.json())
                assert response.status_code >= 500 and body.request_id == response.headers["x-request-id"]
            if index == 0 and number == 1:
                killed["pid"], killed["at"] = _kill_replica(deployment), time.perf_counter()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    failed = [entry for entry in log if entry[2] != 200]
    in_flight = [entry for entry in log if entry[0] <= killed["at"] <= entry[1]]
    recovered = min((answered for sent, answered, status, _ in log if status == 200 and sent > killed["at"]),
                    default=None)
    scenario = (f"serve: {deployment} replica SIGKILLed under load ({len(log)} requests, "
                f"{len(in_flight)} in flight)")
    recovery_s = None if recovered is None else recovered - killed["at"]
    record_fault(scenario, "recovered" if recovered is not None else "not recovered",
                 requests_failed=len(failed), recovery_s=recovery_s)
    assert len(log) == clients * per_client  # every request answered
    assert len(failed) <= len(in_flight) + clients, (failed, in_flight)
    assert recovered is not None
    last = sorted(log)[-clients:]
    assert all(status == 200 for _, _, status, _ in last), last


def _kill_replica(deployment: str) -> int:
    """SIGKILL the process of one replica of ``deployment`` in the test app (of this test session's Ray only:
    another session's app has the same name); returns its pid."""
    marker = f"ServeReplica:{APP_NAME}:{deployment}"
    pids = descendants_named(marker)
    assert pids, f"no process of {marker}"
    os.kill(pids[0], signal.SIGKILL)
    return pids[0]
