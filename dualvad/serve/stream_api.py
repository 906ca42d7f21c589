"""The HTTP side of live streams: ``/v1/streams`` (add, list, read, delete), each stream's events as
Server-Sent Events, its timeline as JSON, and its page (``GET /streams/{id}``).

Every route answers from the app's :class:`~dualvad.serve.streams.StreamRegistry` (``registry``: an actor
handle, or any object whose methods have an awaitable ``.remote``), never from a Streams replica: the
registry knows every stream whichever replica follows it. A URL is checked against the app's allowed schemes
and hosts here, before anything reaches the registry or a replica.

SSE (``GET /v1/streams/{id}/events``): each message is ``id: <event id>``, ``event: open|close``,
``data: <the event as JSON>``; a new subscriber first gets the stream's messages still held (the last
``MAX_MESSAGES``), then new ones as they come; ``Last-Event-ID`` (what EventSource sends when it reconnects)
resumes after the last message about that event. A comment line every ``KEEPALIVE_S`` keeps proxies from
closing an idle connection; ``event: end`` ends the stream of messages when the stream is deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError

from dualvad.pages import render
from dualvad.serve.errors import ServeError
from dualvad.serve.schemas import ErrorResponse, StreamInfo, StreamList, StreamRequest, StreamTimeline
from dualvad.serve.settings import AppArgs
from dualvad.serve.stream_table import check_stream_url

log = logging.getLogger("ray.serve")

KEEPALIVE_S = 15.0
MAX_WAKES = 4  # calls waking the Streams deployment at once (one is enough while a replica starts)
MAX_BODY_BYTES = 16 * 1024  # a URL and a name
ERRORS = {status: {"model": ErrorResponse} for status in (400, 403, 404, 409, 413, 415, 422, 500)}
_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": StreamRequest.model_json_schema()}}}}


class StreamService:
    """The stream routes' work over the registry (module docstring)."""

    def __init__(self, args: AppArgs, registry: Any, streams: Any = None) -> None:
        self.args, self.registry, self.streams = args, registry, streams
        self._wakes: set[asyncio.Task] = set()  # calls of the Streams deployment not yet answered

    def wake(self) -> None:
        """Make sure a Streams replica runs: a call through its handle, which Serve answers by starting one
        when the deployment has none (its cold start). Not awaited by the request; a failure is logged."""
        if self.streams is None or len(self._wakes) >= MAX_WAKES:
            return
        task = asyncio.ensure_future(self._wake())
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    async def _wake(self) -> None:
        try:
            await self.streams.info.remote()
        except Exception as error:  # noqa: BLE001 - logged: the next add or read of a pending stream retries
            log.error("waking the Streams deployment failed: %r", error)

    async def add(self, request: Request) -> dict[str, Any]:
        body = await self._body(request)
        url = check_stream_url(body.url, self.args.allowed_stream_schemes, self.args.allowed_stream_hosts)
        added = await self.registry.add.remote(url, body.name.strip() or _default_name(url),
                                               self.args.max_streams)
        if isinstance(added, str):  # the limit's message
            raise ServeError(409, "too_many_streams", added)
        self.wake()
        return added

    async def get(self, stream_id: str) -> dict[str, Any]:
        found = _known(await self.registry.get.remote(stream_id), stream_id)
        if found["state"] == "pending":  # e.g. wanted by an app redeployed with no replica yet
            self.wake()
        return found

    async def delete(self, stream_id: str) -> dict[str, Any]:
        return _known(await self.registry.remove.remote(stream_id), stream_id)

    async def timeline(self, stream_id: str, since_s: float) -> dict[str, Any]:
        return _known(await self.registry.timeline.remote(stream_id, since_s), stream_id)

    async def messages(self, stream_id: str, last_event_id: str | None) -> AsyncIterator[str]:
        """The SSE text of the stream's messages (module docstring), until the stream is deleted."""
        after = await self.registry.seq_of.remote(stream_id, last_event_id) if last_event_id else 0
        while True:
            messages, wanted = await self.registry.wait_messages.remote(stream_id, after, KEEPALIVE_S)
            for seq, kind, event in messages:
                yield sse(kind, event, event["event_id"])
                after = seq
            if not wanted:
                yield sse("end", {"stream_id": stream_id, "state": "deleted"})
                return
            if not messages:
                yield ": keep-alive\n\n"

    async def _body(self, request: Request) -> StreamRequest:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise ServeError(415, "unsupported_media_type", f"content type {kind or 'none'!r}: {_HOW}")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ServeError(413, "too_large",
                                 f"the JSON body is larger than the limit of {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise ServeError(400, "bad_json", f"the body is not valid JSON: {_HOW}") from None
        if not isinstance(payload, dict):
            raise ServeError(400, "bad_json", _HOW)
        try:
            return StreamRequest(**payload)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}"
                                 for p in error.errors(include_url=False))
            raise ServeError(422, "invalid_option", f"{problems}; {_HOW}") from None


_HOW = 'send JSON {"url": "rtsp://...", "name": "..."}'


def sse(kind: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """One Server-Sent Events message (``data`` as one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


def _default_name(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}{parts.path}"[:200]


def _unknown(stream_id: str) -> ServeError:
    return ServeError(404, "unknown_stream", f"no stream {stream_id!r}: GET /v1/streams lists them")


def _known(found: dict[str, Any] | None, stream_id: str) -> dict[str, Any]:
    """The registry's answer about ``stream_id``; None (no such stream) is the 404 of :func:`_unknown`."""
    if found is None:
        raise _unknown(stream_id)
    return found


def add_stream_routes(app: FastAPI, service: StreamService) -> None:
    """The stream endpoints and page on ``app`` (errors: the app's ServeError handler)."""

    @app.post("/v1/streams", status_code=201, response_model=StreamInfo, responses=ERRORS,
              openapi_extra=_BODY, summary="Follow a live stream")
    async def add(request: Request) -> JSONResponse:
        """JSON ``{"url", "name"}``: 201 with the stream (``stream_id``); a replica adopts it within a
        second."""
        return JSONResponse(await service.add(request), 201)

    @app.get("/v1/streams", response_model=StreamList, summary="The streams followed")
    async def streams() -> dict[str, Any]:
        return {"streams": await service.registry.list.remote()}

    @app.get("/v1/streams/{stream_id}", response_model=StreamInfo, responses=ERRORS, summary="One stream")
    async def one(stream_id: str) -> dict[str, Any]:
        return await service.get(stream_id)

    @app.delete("/v1/streams/{stream_id}", response_model=StreamInfo, responses=ERRORS,
                summary="Stop following a stream")
    async def delete(stream_id: str) -> dict[str, Any]:
        """Its last state; its replica stops it (closing an open event) within a second."""
        return await service.delete(stream_id)

    @app.get("/v1/streams/{stream_id}/timeline", response_model=StreamTimeline, responses=ERRORS,
             summary="A stream's scores, gaps and events")
    async def timeline(stream_id: str, since_s: float = 0.0) -> dict[str, Any]:
        return await service.timeline(stream_id, since_s)

    @app.get("/v1/streams/{stream_id}/events", response_class=StreamingResponse,
             responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
             summary="A stream's events as Server-Sent Events")
    async def events(stream_id: str, request: Request) -> StreamingResponse:
        await service.get(stream_id)  # 404 before the stream of messages starts
        messages = service.messages(stream_id, request.headers.get("last-event-id"))
        return StreamingResponse(messages, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/streams/{stream_id}", response_class=HTMLResponse, include_in_schema=False)
    async def page(stream_id: str) -> str:
        stream = await service.get(stream_id)
        return render("stream.html", stream=stream)
