"""The HTTP side: a FastAPI app over two handle-like objects (``analyzer``, ``judge``).

:func:`create_api` knows nothing of Ray's deployment machinery, so it runs in tests against stand-in handles
too; :class:`dualvad.serve.app.Api` is the Serve ingress that builds it with real deployment handles.
Validation, limits and allowed roots are all checked here, before any work reaches a replica:

- the upload is counted while it streams in and refused with 413 as soon as it passes the limit (a
  ``Content-Length`` above it is refused before reading anything);
- a ``uri`` is resolved (symlinks, ``..``) and must lie under an allowed root, else 403 that says nothing of
  the file;
- the server's own deadline (``request_timeout_s``) bounds every detection, whatever the client's
  ``x-request-timeout-seconds`` header asks of the proxy.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import json
import logging
import os
import posixpath
import time
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from ray.serve.exceptions import BackPressureError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from dualvad.detector import combine
from dualvad.detector_schema import InvalidOptionsError
from dualvad.pages import render
from dualvad.serve.errors import ServeError, error_body
from dualvad.serve.schemas import (
    OPTION_FIELDS,
    DetectRequestOptions,
    DetectResponse,
    ErrorResponse,
    ThumbnailOut,
    UriRequest,
)
from dualvad.serve.settings import AppArgs
from dualvad.serve.stream_api import StreamService, add_stream_routes

log = logging.getLogger("ray.serve")

REQUEST_ID_HEADER = "x-request-id"
MAX_JSON_BYTES = 64 * 1024  # a JSON request is a uri and a few options
VERSIONS = ("dualvad", "ray", "torch", "transformers", "fastapi")
ERRORS = {status: {"model": ErrorResponse} for status in (400, 403, 404, 408, 413, 415, 422, 500, 503, 504)}


class DetectService:
    """One detection per request: read and check the input, Analyzer -> Judge -> combine (here)."""

    def __init__(self, args: AppArgs, analyzer: Any, judge: Any) -> None:
        self.args, self.analyzer, self.judge = args, analyzer, judge
        self._models: dict[str, str | None] | None = None

    async def detect(self, request: Request, request_id: str) -> dict[str, Any]:
        """The JSON body of the answer (:class:`DetectResponse`'s fields)."""
        started = time.perf_counter()
        try:  # a body that stops arriving (a slow or stalled client) must not hold the replica for ever
            options, data, uri = await asyncio.wait_for(self._read_input(request), self.args.read_timeout_s)
        except TimeoutError:
            raise ServeError(408, "request_timeout", f"the request body did not arrive within the server's "
                                                     f"limit of {self.args.read_timeout_s:g} s") from None
        read_ms = (time.perf_counter() - started) * 1000
        try:
            # The server's deadline: the proxy's can be lifted by a client header, this one cannot.
            result = await asyncio.wait_for(self._run(request_id, options, data, uri),
                                            timeout=self.args.request_timeout_s)
        except TimeoutError:
            raise ServeError(504, "timeout", f"the detection took longer than the server's limit of "
                                             f"{self.args.request_timeout_s:g} s") from None
        result.timings_ms = {"read_input": read_ms, **result.timings_ms,
                             "total": (time.perf_counter() - started) * 1000}
        return result.model_dump()

    async def info(self) -> dict[str, Any]:
        analyzer, judge = await asyncio.gather(_call(self.analyzer.info), _call(self.judge.info))
        return {"models": {"analyzer": analyzer, "judge": judge},
                "settings": self.args.model_dump(),
                "versions": {name: _version(name) for name in VERSIONS}}

    async def _run(self, request_id: str, options: DetectRequestOptions, data: bytes | None,
                   uri: str | None) -> DetectResponse:
        analysis = await _call(self.analyzer.analyze, request_id, options.detect_options(), data=data,
                               uri=uri)
        judgement = await _call(self.judge.judge, request_id, list(analysis.jpegs), options.explain)
        # Combining is arithmetic over the two answers: done here, so it takes no Analyzer slot (a queued
        # combine behind new analyses would shed a request that is nearly done).
        detection = combine(analysis, judgement, options.threshold).result(await self._model_names())
        thumbs = _thumbnails(analysis.frames, judgement.frame_scores, analysis.jpegs, options.thumbnails)
        return DetectResponse(**dict(detection), request_id=request_id, thumbnails=thumbs)

    async def _model_names(self) -> dict[str, str | None]:
        if self._models is None:
            judge = await _call(self.judge.info)
            self._models = {"run": self.args.run, "vlm": judge.get("vlm")}
        return self._models

    # ------------------------------------------------------------------------------------------- input

    async def _read_input(self, request: Request) -> tuple[DetectRequestOptions, bytes | None, str | None]:
        """(options, upload bytes, uri): exactly one of the last two is set."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        limit, what = ((self.args.max_upload_bytes, "upload") if kind == "multipart/form-data" else
                       (MAX_JSON_BYTES, "JSON body" if kind == "application/json" else "body"))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit, what)
        if declared == "0":
            raise ServeError(400, "empty_body", _EMPTY)
        if kind == "multipart/form-data":
            return await self._read_upload(request)
        if kind == "application/json":
            return self._read_uri(await _read_limited(request, limit, what))
        if not await _read_limited(request, limit, what):
            raise ServeError(400, "empty_body", _EMPTY)
        raise ServeError(415, "unsupported_media_type", f"content type {kind or 'none'!r}: {_EMPTY}")

    async def _read_upload(self, request: Request) -> tuple[DetectRequestOptions, bytes, None]:
        counted = Request(request.scope, _limited_receive(request.receive, self.args.max_upload_bytes))
        try:
            form = await counted.form(max_files=1, max_fields=len(OPTION_FIELDS))
        except HTTPException as error:  # Starlette's multipart parser: a broken body, too many parts ...
            raise ServeError(error.status_code, "bad_multipart",
                             f"the multipart body cannot be read: {error.detail}; {_EMPTY}") from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ServeError(400, "no_file", "the multipart body has no file field named 'file'")
            data = await upload.read()
            fields = {key: value for key, value in form.multi_items() if key != "file"}
        finally:
            await form.close()  # deletes Starlette's spooled temp file
        if not data:
            raise ServeError(400, "empty_body", "the uploaded file is empty (0 bytes)")
        return _options(fields), data, None

    def _read_uri(self, body: bytes) -> tuple[DetectRequestOptions, None, str]:
        if not body.strip():
            raise ServeError(400, "empty_body", _EMPTY)
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise ServeError(400, "bad_json", f"the body is not valid JSON: {error}") from None
        except RecursionError:  # small enough to read, but arrays or objects nested thousands deep
            raise ServeError(400, "bad_json", "the JSON body is nested too deeply to read; send "
                                              '{"uri": ..., <options>}') from None
        if not isinstance(payload, dict) or "uri" not in payload:
            raise ServeError(400, "no_uri", 'a JSON body must be an object with a "uri" key')
        _refuse_unknown(set(payload) - {"uri"})
        request = _validated(UriRequest, payload)
        return request, None, self._allowed(request.uri)  # a UriRequest is its options and the uri

    def _allowed(self, uri: str) -> str:
        """``uri`` normalised, when it lies under an allowed root; else 403 that says nothing of the file."""
        if "\0" in uri:  # no path holds one, and os.path refuses it with a ValueError
            raise ServeError(422, "invalid_option", "uri holds a NUL character: name a file")
        if uri.startswith("file://"):  # pyarrow's URI of a local file: checked as the path it names
            parts = urlsplit(uri)
            uri = unquote(parts.path) if parts.netloc in ("", "localhost") else uri
        if "://" in uri:
            scheme, _, rest = uri.partition("://")
            candidate = f"{scheme}://{posixpath.normpath('/' + rest).lstrip('/')}"
        else:
            candidate = os.path.realpath(uri)
        for root in self.args.allowed_roots:
            prefix = root.rstrip("/") + "/"
            if candidate == root.rstrip("/") or candidate.startswith(prefix):
                if "://" not in candidate and not os.path.isfile(candidate):
                    # inside an allowed root, so saying what is there discloses nothing new
                    what = "a folder" if os.path.isdir(candidate) else "nothing"
                    raise ServeError(404, "not_found", f"{uri} is {what}, not a video file: name a file")
                return candidate
        raise ServeError(403, "forbidden_uri", "this uri is not under any of the server's allowed roots")


_EMPTY = "send multipart/form-data with a video in the field 'file', or JSON {\"uri\": ...}"


def _options(fields: dict[str, Any]) -> DetectRequestOptions:
    _refuse_unknown(set(fields))
    return _validated(DetectRequestOptions, fields)


def _refuse_unknown(names: set[str]) -> None:
    """422 ``unknown_option`` naming the option fields in ``names`` that do not exist (form or JSON alike)."""
    unknown = sorted(names - set(OPTION_FIELDS))
    if unknown:
        raise ServeError(422, "unknown_option", f"unknown option(s) {unknown}; valid: {list(OPTION_FIELDS)}")


def _validated(model: type, payload: dict[str, Any]) -> Any:
    """``model`` (:class:`DetectRequestOptions` or :class:`UriRequest`) of ``payload``; 422 naming each bad
    option and what it accepts."""
    try:
        return model(**payload)
    except InvalidOptionsError as error:
        raise ServeError(422, "invalid_option", f"{error}; valid options: {list(OPTION_FIELDS)}") from None


def _too_large(limit: int, what: str = "upload") -> ServeError:
    return ServeError(413, "too_large", f"the {what} is larger than the limit of {limit} bytes")


def _limited_receive(receive: Any, limit: int) -> Any:
    """An ASGI ``receive`` that counts body bytes and raises 413 the moment they pass ``limit``."""
    seen = 0

    async def counting() -> dict[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return counting


async def _read_limited(request: Request, limit: int, what: str) -> bytes:
    """The whole body; 413 naming ``what`` (the kind of body) as soon as it passes ``limit`` bytes."""
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit, what)
        chunks.append(chunk)
    return b"".join(chunks)


async def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """Await a handle method (``handle.m.remote(...)``), unwrapping a replica's ServeError from Ray's
    wrapper so its status reaches the client; the queue being full is a 503."""
    try:
        return await method.remote(*args, **kwargs)
    except BackPressureError:
        raise ServeError(503, "overloaded", "the server's queue is full; retry later") from None
    except ServeError:
        raise
    except Exception as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, ServeError):
            raise ServeError(cause.status, cause.code, cause.message, cause.headers) from None
        raise


def _thumbnails(frames: np.ndarray, scores: np.ndarray, jpegs: list[bytes], count: int) -> list[ThumbnailOut]:
    """The ``count`` frames with the highest P(Yes), in frame order, as base64 JPEGs."""
    if count == 0:
        return []
    top = sorted(np.argsort(-np.asarray(scores), kind="stable")[:count].tolist())
    return [ThumbnailOut(index=int(frames[i]), p_yes=float(scores[i]),
                         jpeg_base64=base64.b64encode(jpegs[i]).decode("ascii")) for i in top]


def _id_header(request: Request) -> dict[str, str]:
    """The x-request-id response header, when no proxy in front adds it."""
    if getattr(request.state, "own_request_id", False):
        return {REQUEST_ID_HEADER: request.state.request_id}
    return {}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _page() -> str:
    """The upload page (its threshold field empty: the run's verdict decides unless the user sets one)."""
    return render("upload.html")


def create_api(service: DetectService, streams: StreamService | None = None) -> FastAPI:
    """The FastAPI app: ``POST /v1/detect``, ``GET /v1/info``, ``GET /healthz``, ``GET /`` and ``/docs``; with
    ``streams``, the live streams' routes too (:func:`dualvad.serve.stream_api.add_stream_routes`)."""
    app = FastAPI(title="dualvad", version=_version("dualvad") or "dev",
                  description="Video anomaly detection: segment scorer + frame allocation + VLM judge.")

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, error: ServeError) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "")
        log.info("request %s: %s", request_id, error)
        headers = {**error.headers, **_id_header(request)}
        if error.status == 503:
            headers.setdefault("Retry-After", str(service.args.retry_after_s))
        return JSONResponse(error_body(request_id, error.code, error.message), error.status, headers=headers)

    def internal(request: Request, error: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "")
        log.error("request %s failed: %r", request_id, error, exc_info=error)
        message = f"internal error; the server log has the details under request_id {request_id}"
        return JSONResponse(error_body(request_id, "internal", message), 500, headers=_id_header(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's own checks of declared parameters (``since_s=abc``), in the app's error format."""
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors())
        return await _serve_error(request, ServeError(422, "invalid_option", problems))

    # The last resort for the other routes (Starlette re-raises after answering, so the server logs it too).
    app.add_exception_handler(Exception, internal)

    @app.middleware("http")
    async def _request_id(request: Request, call_next: Any) -> Any:
        # Serve's proxy puts its request id (the one in its logs) in x-request-id and echoes it in the
        # response; outside Serve (tests of this app alone) the id is made here and sent back here.
        given = request.headers.get(REQUEST_ID_HEADER)
        request.state.request_id = given or uuid.uuid4().hex
        request.state.own_request_id = given is None
        response = await call_next(request)
        response.headers.update(_id_header(request))
        return response

    @app.post("/v1/detect", response_model=DetectResponse, responses=ERRORS,
              openapi_extra=_DETECT_BODY, summary="Detect anomalies in one video")
    async def detect(request: Request) -> JSONResponse:
        """Multipart upload (field ``file`` plus option fields) or JSON ``{"uri": ..., options}``."""
        try:
            return JSONResponse(await service.detect(request, request.state.request_id))
        except ServeError:
            raise
        except Exception as error:  # noqa: BLE001 - logged with the request id and answered 500, not lost
            return internal(request, error)

    @app.get("/v1/info", summary="Models, settings, versions, observed Judge batch sizes")
    async def info() -> dict[str, Any]:
        return await service.info()

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return _page()

    if streams is not None:
        add_stream_routes(app, streams)
    return app


_OPTIONS_SCHEMA = DetectRequestOptions.model_json_schema()["properties"]
_DETECT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video"}, **_OPTIONS_SCHEMA}}},
    "application/json": {"schema": UriRequest.model_json_schema()},
}}}
