"""Writing one file atomically, on a local disk or a pyarrow filesystem, and file names made from free text.

:func:`write_atomic` is the one writer of every file a reader may open while it is written (run tables,
the report's pages and plots, the synthetic corpus): on a local disk the content goes to a temporary name
in the same folder (:data:`TEMP_PREFIX`, so a listing of data files skips it) and is renamed into place;
on object storage, where one PUT of an object is atomic already and a rename is a copy plus a delete, it
is written in place. Either way a reader sees the old file or the whole new one, never a part.

Plain Python and pyarrow's filesystems only: nothing here may import Ray or a stage.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Sequence

import pyarrow.fs as pafs

# a temporary file's name starts with this: hidden, and skipped where a folder's data files are listed
TEMP_PREFIX = ".tmp-"
# what a file-name stem keeps; every other run of characters becomes one separator
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_atomic(path: str | os.PathLike[str], content: bytes | Callable[[str], None],
                 fs: pafs.FileSystem | None = None) -> str:
    """Write the file ``path`` so that no reader sees half of it; its folder is created.

    Args:
        path: a local path when ``fs`` is ``None`` or a :class:`pyarrow.fs.LocalFileSystem`, else a path
            inside ``fs`` (``bucket/key`` on S3). An existing file is replaced.
        content: the bytes, or a function that writes the whole file at the path it is given (a
            temporary name in ``path``'s folder on a local disk, ``path`` itself on object storage), e.g.
            ``lambda p: pq.write_table(table, p, filesystem=fs)``.
        fs: the filesystem of ``path``; ``None`` for the local disk.

    Returns:
        ``path`` as a string.

    A write that raises leaves the old file (if any) and no temporary file behind on a local disk.
    """
    target = os.fspath(path)
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return _write_local(target, content)
    if "/" in target:
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    if callable(content):  # one PUT: the object appears whole or not at all
        content(target)
    else:
        with fs.open_output_stream(target) as stream:
            stream.write(content)
    return target


def _write_local(target: str, content: bytes | Callable[[str], None]) -> str:
    """:func:`write_atomic` on the local disk: a temporary name in the same folder, then a rename."""
    folder, name = os.path.split(target)
    os.makedirs(folder or ".", exist_ok=True)
    # the target's name at the end keeps its extension, for writers that choose a format by it
    temp = os.path.join(folder, f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}")
    try:
        if callable(content):
            content(temp)
        else:
            with open(temp, "wb") as file:
                file.write(content)
        os.replace(temp, target)
    finally:
        if os.path.lexists(temp):  # the write failed: the old file stays, the temporary one goes
            os.remove(temp)
    return target


def safe_name(text: str, sep: str = "_", empty: str = "file") -> str:
    """``text`` as a file-name stem: each run of characters other than ``A-Za-z0-9._-`` becomes ``sep``, and
    ``.``, ``_`` and ``-`` are stripped from both ends (no hidden file, no ``..``); ``empty`` where nothing
    is left. ``safe_name("vlm/focused", "-") == "vlm-focused"``, ``safe_name("../x y") == "x_y"``."""
    return _UNSAFE.sub(sep, text).strip("._-") or empty


def safe_names(texts: Sequence[str], empty: str = "video") -> list[str]:
    """:func:`safe_name` of each text, made unique by a ``_2``, ``_3``... suffix (two ids may sanitise to
    one name, ``a/b`` and ``a_b``: both keep a file of their own)."""
    names: list[str] = []
    taken: set[str] = set()
    for text in texts:
        base = safe_name(text, "_", empty)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
        taken.add(name)
    return names
