"""The FastAPI app alone (no Ray), with stand-in handles: the server's deadline that a client header cannot
lift, an error inside a replica as a 500 whose request id is in the log, and a full queue as 503."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from ray.serve.exceptions import BackPressureError

import dualvad
from dualvad.detection import Analysis, VideoInfo
from dualvad.detector_schema import DetectOptions
from dualvad.eval.verdict import Verdict
from dualvad.serve.api import DetectService, create_api
from dualvad.serve.schemas import DetectResponse
from dualvad.serve.settings import AppArgs
from dualvad.vlm.judge import Judgement


class Method:
    """``handle.method`` look-alike: ``.remote(...)`` returns an awaitable running ``function``."""

    def __init__(self, function) -> None:
        self.function = function

    def remote(self, *args, **kwargs):
        return self.function(*args, **kwargs)


def _analysis():
    return SimpleNamespace(jpegs=[b"x"], frames=np.array([0]))


def _handles(analyze=None):
    async def default_analyze(*args, **kwargs):
        return _analysis()

    async def info():
        return {"vlm": "stand-in"}

    analyzer = SimpleNamespace(analyze=Method(analyze or default_analyze), info=Method(info))
    return analyzer, SimpleNamespace(info=Method(info))


def _client(tmp_path, analyze, **args) -> httpx.AsyncClient:
    service = DetectService(AppArgs(run="r", allowed_roots=[str(tmp_path)], **args), *_handles(analyze))
    transport = httpx.ASGITransport(app=create_api(service))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _run(coroutine):
    return asyncio.run(coroutine)


def test_the_server_deadline_holds_whatever_the_client_header_asks(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"v")

    async def slow(*args, **kwargs):  # an analysis that never finishes: only the deadline can answer
        await asyncio.Event().wait()

    async def go():
        async with _client(tmp_path, slow, request_timeout_s=0.3) as client:
            return await client.post("/v1/detect", json={"uri": str(tmp_path / "v.mp4")},
                                     headers={"x-request-timeout-seconds": "3600"})

    response = _run(go())
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout" and "0.3 s" in response.json()["error"]["message"]


def test_an_error_inside_a_replica_is_a_500_with_the_request_id_in_the_log(tmp_path, caplog):
    (tmp_path / "v.mp4").write_bytes(b"v")

    async def broken(*args, **kwargs):
        raise RuntimeError("the decoder crashed")

    async def go():
        async with _client(tmp_path, broken) as client:
            return await client.post("/v1/detect", json={"uri": str(tmp_path / "v.mp4")})

    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        response = _run(go())
    body = response.json()
    assert response.status_code == 500 and body["error"]["code"] == "internal"
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"] in body["error"]["message"]
    assert "the decoder crashed" not in response.text
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info and "the decoder crashed" in str(logged[0].exc_info[1])


def test_a_full_queue_is_503_with_retry_after(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"v")

    async def shed(*args, **kwargs):
        raise BackPressureError(num_queued_requests=3, max_queued_requests=3)

    async def go():
        async with _client(tmp_path, shed, retry_after_s=7) as client:
            return await client.post("/v1/detect", json={"uri": str(tmp_path / "v.mp4")})

    response = _run(go())
    assert response.status_code == 503 and response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "overloaded"


@pytest.mark.parametrize("uri", ["s3://videos/../secrets/a.mp4", "s3://other/a.mp4", "gs://videos/a.mp4"])
def test_uri_prefixes_are_compared_normalised(tmp_path, uri):
    service = DetectService(AppArgs(run="r", allowed_roots=["s3://videos/"]), *_handles())
    with pytest.raises(Exception) as refused:
        service._allowed(uri)
    assert refused.value.status == 403
    assert service._allowed("s3://videos/x/../a.mp4") == "s3://videos/a.mp4"


def _post(tmp_path, **request) -> httpx.Response:
    async def go():
        async with _client(tmp_path, None) as client:
            return await client.post("/v1/detect", **request)

    return _run(go())


def test_a_deeply_nested_json_body_is_a_400_not_a_500(tmp_path):
    """Under the JSON size limit but nested past what the parser recurses into."""
    response = _post(tmp_path, content=b"[" * 32000 + b"]" * 32000,
                     headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_json" and "nested too deeply" in error["message"]


def test_a_json_body_over_its_limit_is_a_413_that_names_the_json_limit(tmp_path):
    from dualvad.serve.api import MAX_JSON_BYTES

    response = _post(tmp_path, json={"uri": "x" * MAX_JSON_BYTES})
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    assert f"JSON body is larger than the limit of {MAX_JSON_BYTES} bytes" in message
    assert "upload" not in message


def test_an_unknown_option_has_one_code_in_json_and_in_a_form(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"v")
    in_json = _post(tmp_path, json={"uri": str(tmp_path / "v.mp4"), "colour": "red"})
    in_form = _post(tmp_path, files={"file": ("v.mp4", b"v")}, data={"colour": "red"})
    for response in (in_json, in_form):
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "unknown_option" and "colour" in error["message"], error


def test_a_bad_option_value_is_a_422_naming_it_in_json_and_in_a_form(tmp_path):
    """The detector's options model validates both (dualvad detect's own messages), then the HTTP API's
    thumbnails; strings of a form parse as their values."""
    (tmp_path / "v.mp4").write_bytes(b"v")
    cases = [({"budget": 0}, "budget must be an integer >= 1 (or None: the run's sample.budget), got "),
             ({"strategy": "bogus"}, "strategy must be one of focused, uniform, random, cdf"),
             ({"explain": "maybe"}, "explain must be true or false, got 'maybe'"),
             ({"thumbnails": 65}, "thumbnails: Input should be less than or equal to 64")]
    for options, expected in cases:
        in_json = _post(tmp_path, json={"uri": str(tmp_path / "v.mp4"), **options})
        form = {name: str(value) for name, value in options.items()}
        in_form = _post(tmp_path, files={"file": ("v.mp4", b"v")}, data=form)
        for response in (in_json, in_form):
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "invalid_option" and expected in error["message"], error
            assert "valid options: ['budget', 'strategy', 'tau', 'threshold', 'explain', 'thumbnails']" \
                in error["message"]
    assert _post(tmp_path, json={"uri": str(tmp_path / "v.mp4"), "budget": True}).status_code == 422


def test_the_analyzer_gets_the_detector_s_options_parsed_from_a_form(tmp_path):
    seen = []

    async def analyze(request_id, options, **kwargs):
        seen.append(options)
        raise RuntimeError("stop here")  # answered 500: this test needs only what the Analyzer got

    async def go():
        async with _client(tmp_path, analyze) as client:
            return await client.post("/v1/detect", files={"file": ("v.mp4", b"v")},
                                     data={"budget": "4", "strategy": "uniform", "explain": "false",
                                           "thumbnails": "2"})

    assert _run(go()).status_code == 500
    assert seen == [DetectOptions(budget=4, strategy="uniform", explain=False)]


def test_a_detection_carries_the_verdict_and_the_scorer_s_category(tmp_path):
    """A whole answer from stand-in halves: the verdict's video and segment scores, both models' video
    scores, the category and its probability (on a normal verdict too), validated by the response model."""
    fitted = Verdict("fitted", 1.0, 1.0, 0.0, 0.9, True, "")
    analysis = Analysis(VideoInfo(8, 4.0, 2.0), np.array([[0, 4], [4, 8]]), np.array([0.5, 0.75], np.float32),
                        "Explosion", np.array([1, 5]), [b"a", b"b"], {}, "v", "focused", 0.25, fitted)
    judgement = Judgement(np.array([0.5, 0.5], np.float32), [0], [5.0], ["text"], {}, [2])

    async def analyze(*args, **kwargs):
        return analysis

    async def judge(*args, **kwargs):
        return judgement

    analyzer, judge_handle = _handles(analyze)
    judge_handle.judge = Method(judge)
    service = DetectService(AppArgs(run="r", allowed_roots=[str(tmp_path)]), analyzer, judge_handle)

    async def go():
        transport = httpx.ASGITransport(app=create_api(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/detect", files={"file": ("v.mp4", b"v")})

    response = _run(go())
    assert response.status_code == 200, response.text
    body = response.json()
    # sigmoid(logit(0.75) + logit(0.5)) = 0.75 < 0.9: normal, and the category is still there
    assert (body["video_score"], body["is_anomalous"]) == (pytest.approx(0.75), False)
    assert (body["scorer_score"], body["vlm_score"]) == (0.75, 0.5)
    assert (body["category"], body["category_probability"]) == ("Explosion", 0.25)
    assert body["verdict"] == {"source": "fitted", "scorer_weight": 1.0, "vlm_weight": 1.0, "bias": 0.0,
                               "threshold": 0.9, "vlm_used": True, "reason": ""}
    assert [(s["score"], s["vlm_score"], s["scorer_score"]) for s in body["segments"]] == [
        (pytest.approx(0.5), 0.5, 0.5), (pytest.approx(0.75), 0.5, 0.75)]
    DetectResponse.model_validate(body)


def test_a_file_uri_is_the_local_path_it_names(tmp_path):
    """``file://`` is a pyarrow URI like ``s3://``: under an allowed root it is the file; outside (also by
    ``..``) it is refused like the path itself."""
    (tmp_path / "v.mp4").write_bytes(b"v")
    service = DetectService(AppArgs(run="r", allowed_roots=[str(tmp_path)]), *_handles())
    assert service._allowed(f"file://{tmp_path}/v.mp4") == str(tmp_path / "v.mp4")
    assert service._allowed(f"file://{tmp_path}/sub/../v.mp4") == str(tmp_path / "v.mp4")
    for outside in (f"file://{tmp_path}/../x.mp4", "file:///etc/hostname"):
        with pytest.raises(Exception) as refused:
            service._allowed(outside)
        assert refused.value.status == 403, outside


def test_the_judge_s_batch_sizes_go_to_the_serve_metric_and_to_info():
    """Each batch is observed by the Serve histogram (Prometheus collects it from every replica) and counted
    for this replica's /v1/info; the real metric can be made and recorded outside a replica too."""
    from dualvad.serve.deployments import BATCH_SIZE_BUCKETS, BATCH_SIZE_METRIC, BatchSizes

    observed = []
    sizes = BatchSizes(SimpleNamespace(observe=observed.append))
    for size in (4, 1, 4):
        sizes.record(size)
    assert observed == [4, 1, 4] and sizes.seen() == {"1": 1, "4": 2}
    real = BatchSizes()
    real.record(3)
    assert real.histogram.info["name"] == BATCH_SIZE_METRIC
    assert real.histogram.info["boundaries"] == BATCH_SIZE_BUCKETS and real.seen() == {"3": 1}


def test_the_upload_page_is_its_template_with_the_threshold_left_to_the_run(tmp_path):
    async def go():
        async with _client(tmp_path, None) as client:
            return await client.get("/")

    response = _run(go())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    template = (Path(dualvad.__file__).parent / "templates" / "upload.html").read_text(encoding="utf-8")
    assert "{{" not in template and response.text == template  # nothing to fill in
    # an empty field sends no threshold: the run's verdict decides, and the timeline draws the one used
    assert 'id="threshold" min="0" max="1" step="0.05" placeholder="run\'s verdict">' in response.text
    assert "const threshold = result.verdict.threshold;" in response.text
