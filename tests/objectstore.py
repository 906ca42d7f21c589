"""A real S3 API on loopback for the object-storage tests: moto's standalone server in this process.

The server is started and stopped by the caller (a fixture); :func:`s3_env` is the environment a client
needs to reach it: pyarrow (>= 15) and boto3 both read ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loopback import free_port

REGION = "us-east-1"


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment of a client of the server at ``endpoint`` (fake credentials: moto accepts any)."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def s3_environment(settings: dict[str, str]) -> Iterator[dict[str, str]]:
    """``settings`` in this process's environment for the block (what was there before is put back)."""
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield settings
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def upload_folder(local: Path, uri: str) -> None:
    """Every file under folder ``local`` copied to folder ``uri`` of a store (its settings in this process's
    environment)."""
    import pyarrow.fs as pafs

    from dualvad.rundir import open_run

    store = open_run(uri)
    pafs.copy_files(str(local), store.path(), destination_filesystem=store.fs)


def s3_client(endpoint: str):
    """A boto3 S3 client of the server at ``endpoint`` (the fake credentials of :func:`s3_env`)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@contextmanager
def moto_s3(*buckets: str) -> Iterator[str]:
    """A moto S3 server on a free loopback port holding empty ``buckets``; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _create_buckets(endpoint, buckets)
        yield endpoint
    finally:
        server.stop()


@contextmanager
def moto_s3_process(*buckets: str) -> Iterator[str]:
    """As :func:`moto_s3`, the server in a process of its own: for a store that Ray workers use while this
    process drives them (a driver's threads would share the GIL with the server's); yields its endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_server(endpoint, server)
        _create_buckets(endpoint, buckets)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def _create_buckets(endpoint: str, buckets: tuple[str, ...]) -> None:
    client = s3_client(endpoint)
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)


def _wait_for_server(endpoint: str, server: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Until ``endpoint`` answers HTTP (moto's import takes seconds on a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError as error:
            if server.poll() is not None:
                raise RuntimeError(f"moto's server exited with {server.returncode}") from error
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto's server at {endpoint} did not answer in {timeout_s} s") from error
            time.sleep(0.2)


class GatedS3:
    """A loopback proxy in front of an S3 server that holds every object read (GET) until :meth:`release`:
    a request whose video lives behind it occupies its Analyzer slot for as long as the test wants, with no
    hook in the code under test. HEAD and the other calls pass straight through.

    ``waiting`` counts the reads held right now; :meth:`wait_for` waits on that count (a condition with a
    bound, never a sleep). A read is one SDK call, not one connection: the AWS SDK gives up on a GET that
    is silent for about 3 s and sends it again with the same ``amz-sdk-invocation-id``, so on a slow
    machine a held read has several attempts waiting; they count once. ``attempts`` counts every GET that
    reached the gate.

    Used as a context manager, it serves on a free port and releases every held read when the block ends
    (a failing test must not leave requests hanging).
    """

    def __init__(self, upstream: str, hold_bound_s: float = 300.0) -> None:
        import threading

        self.upstream, self.hold_bound_s = upstream, hold_bound_s
        self.port = free_port()
        self.attempts = 0
        self._held: dict[object, int] = {}  # read (SDK invocation) -> its attempts held now
        self._open = threading.Event()
        self._changed = threading.Condition()
        self._server = None

    @staticmethod
    def root(bucket: str) -> str:
        """The prefix of every :meth:`uri` into ``bucket`` (an allowed root of the serve app)."""
        return f"s3://testing:testing@{bucket}/"

    def uri(self, bucket: str, key: str) -> str:
        """A pyarrow URI of ``bucket/key`` read through this proxy (credentials and endpoint in the URI, so a
        process without the S3 environment, such as a Serve replica, reads it too)."""
        return f"{self.root(bucket)}{key}?endpoint_override=127.0.0.1:{self.port}&scheme=http&region={REGION}"

    def release(self) -> None:
        """Let every held read and every later one through."""
        self._open.set()

    def close(self) -> None:
        """Hold reads again from now on (the gate starts closed)."""
        self._open.clear()

    def wait_for(self, count: int, timeout_s: float = 120.0, attempts: int = 0) -> None:
        """Return once exactly ``count`` reads are held and at least ``attempts`` GETs have arrived in all;
        AssertionError after ``timeout_s``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._held) == count and self.attempts >= attempts,
                                          timeout=timeout_s):
                raise AssertionError(f"{len(self._held)} reads held and {self.attempts} attempts after "
                                     f"{timeout_s:g} s, expected {count} and at least {attempts}")

    @property
    def waiting(self) -> int:
        """The reads (SDK invocations) held right now."""
        with self._changed:
            return len(self._held)

    def _hold(self, read: object) -> None:
        """Block one attempt of ``read`` until :meth:`release` (or ``hold_bound_s``, then TimeoutError)."""
        with self._changed:
            self.attempts += 1
            self._held[read] = self._held.get(read, 0) + 1
            self._changed.notify_all()
        try:
            if not self._open.wait(self.hold_bound_s):
                raise TimeoutError(f"GatedS3: a read was held {self.hold_bound_s:g} s and never released")
        finally:
            with self._changed:
                self._held[read] -= 1
                if not self._held[read]:
                    del self._held[read]
                self._changed.notify_all()

    def __enter__(self) -> GatedS3:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        gate, target = self, urlsplit(self.upstream)

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                if self.command == "GET":  # a client without the SDK's header: each request is its own read
                    gate._hold(self.headers.get("amz-sdk-invocation-id") or object())
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body, headers=dict(self.headers))
                    answer = connection.getresponse()
                    payload = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    # a HEAD's content-length is the object's size: kept; a GET's body is re-sent whole
                    if name.lower() not in ("transfer-encoding", "connection") and not (
                            name.lower() == "content-length" and self.command != "HEAD"):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("content-length", str(len(payload)))
                try:
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    if self.command != "GET":
                        raise
                    # an attempt the SDK gave up on while it was held: its retry, on another connection,
                    # carries the answer
                    self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                pass  # one line per S3 request otherwise

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Forward)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
