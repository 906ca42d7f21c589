"""A real S3 API on loopback for the object-storage tests: moto's standalone server in this process.

The server is started and stopped by the caller (a fixture); :func:`s3_env` is the environment a client
needs to reach it: pyarrow (>= 15) and boto3 both read ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from loopback import free_port

REGION = "us-east-1"


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment of a client of the server at ``endpoint`` (fake credentials: moto accepts any)."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def moto_s3(*buckets: str) -> Iterator[str]:
    """A moto S3 server on a free loopback port holding empty ``buckets``; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
