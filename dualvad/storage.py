"""One pyarrow filesystem per store and process: :func:`resolve` turns a URI into (filesystem, path).

``pyarrow.fs.FileSystem.from_uri`` builds a new client per call, and Arrow registers each new S3 client
under a lock that waits for the requests of the clients already open. A process that opens a URI per
request (a Serve replica reading videos from S3) therefore held each new request behind the downloads in
flight. Resolving through here builds one filesystem per store (scheme, bucket or host, query options and
the ``AWS_*`` / ``GOOGLE_*`` environment it was built under) and shares it: pyarrow filesystems are
thread-safe.
"""

from __future__ import annotations

import os
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

import pyarrow.fs as pafs

SHARED_SCHEMES = ("s3", "gs", "gcs", "file")  # where the path inside is the bucket (if any) + the URI's path
# what else selects a store's endpoint and credentials: the same URI under other values is another store
ENV_PREFIXES = ("AWS_", "GOOGLE_", "STORAGE_EMULATOR_HOST")
_STORES: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[pafs.FileSystem, str]] = {}
_LOCK = threading.Lock()


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``uri`` (a pyarrow filesystem URI: ``s3://bucket/key?endpoint_override=...``, ``gs://...``,
    ``file:///...``) as (its store's shared filesystem, the path inside it), the pair
    ``FileSystem.from_uri`` gives (``bucket/key`` on S3, percent-escapes decoded). Other schemes (``hdfs``,
    ``abfs``) get a filesystem of their own per call, as from ``from_uri``.

    Raises:
        ValueError: ``uri`` has no scheme (a local path: open it with the local filesystem), or pyarrow
            knows no filesystem for it (pyarrow's message names the scheme).
    """
    parts = urlsplit(uri)
    if not parts.scheme or "://" not in uri:
        raise ValueError(f"{uri}: not a filesystem URI (scheme://...); a local path needs no resolving")
    if parts.scheme not in SHARED_SCHEMES:
        return pafs.FileSystem.from_uri(uri)
    store = urlunsplit((parts.scheme, parts.netloc, "/", parts.query, ""))
    key = (store, tuple(sorted((name, value) for name, value in os.environ.items()
                               if name.startswith(ENV_PREFIXES))))
    with _LOCK:  # one builder: a second one would wait for the first one's reads (see the module's doc)
        if key not in _STORES:
            _STORES[key] = pafs.FileSystem.from_uri(store)
        filesystem, root = _STORES[key]
    return filesystem, (root.rstrip("/") + unquote(parts.path)).rstrip("/") or root
