"""Two runs' outputs compared table by table: rows in key order (which videos share a Parquet part follows
the order workers finish in), floats to a relative 1e-6 (a float32 score may differ in its last bit with
its batch), JSON files parsed, the columns naming where the videos are left out. Used by the job test
(a run on S3 against a local one); run directly to compare two runs stage by stage::

    python tests/runcompare.py RUN_A RUN_B

It prints one line per stage output and exits 1 when any differs.
"""

from __future__ import annotations

import json
import math
import sys

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dualvad import paths
from dualvad.rundir import RunDir, open_run
from dualvad.stages.registry import STAGES

LOCATION_COLUMNS = {"video_path"}  # s3://... in one run, /tmp/... in the other
ROW_KEYS = ("video_id", "id", "segment_index", "frame_index")  # what orders the rows of every table


def rows(run: RunDir, folder: str) -> dict[str, list[dict]]:
    """The rows of every table under ``RUN/<folder>`` (a folder of parts, or one file) without the location
    columns, in key order; by table (the folder holding the parts, or the file)."""
    base = run.path(folder)
    selector = pafs.FileSelector(base, recursive=True)
    files = sorted(i.path for i in run.fs.get_file_info(selector)
                   if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    tables: dict[str, list[dict]] = {}
    for path in files:
        name = path[len(base) + 1:]
        folder_of, _, base_name = name.rpartition("/")
        key = f"{folder_of or '.'}/part-*" if base_name.startswith("part-") else name
        tables.setdefault(key, []).extend(
            {k: v for k, v in row.items() if k not in LOCATION_COLUMNS}
            for row in pq.read_table(path, filesystem=run.fs).to_pylist())
    return {key: sorted(table, key=lambda row: tuple(str(row.get(k)) for k in ROW_KEYS))
            for key, table in tables.items()}


def json_files(run: RunDir, folder: str) -> dict[str, object]:
    """Every JSON file under ``RUN/<folder>`` but the runner's record (which holds times), parsed."""
    base = run.path(folder)
    infos = run.fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return {i.path[len(base) + 1:]: json.loads(read_bytes(run, folder, i.path[len(base) + 1:])) for i in infos
            if i.type == pafs.FileType.File and i.path.endswith(".json") and i.base_name != paths.STAGE_FILE}


def close(a, b) -> bool:
    """Equal, floats to a relative 1e-6 (the last bits of a batched float32 pass), inside lists and dicts."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def read_bytes(run: RunDir, *parts: str) -> bytes:
    """The bytes of ``RUN/<parts>``."""
    with run.fs.open_input_stream(run.path(*parts)) as stream:
        return stream.read()


def differences(first: RunDir, second: RunDir, folder: str) -> list[str]:
    """What differs between ``first/<folder>`` and ``second/<folder>``: tables and JSON files missing on one
    side or unequal (the runner's record, which holds times, is left out); a folder with nothing to compare
    in ``first`` is a difference too."""
    expected = rows(first, folder) | json_files(first, folder)
    found = rows(second, folder) | json_files(second, folder)
    if not expected:
        return [f"{first.path(folder)}: no table or JSON file to compare"]
    missing = [f"{name}: only in {run.uri}" for run, names in ((first, expected.keys() - found.keys()),
                                                                (second, found.keys() - expected.keys()))
               for name in sorted(names)]
    return missing + [f"{name}: differs" for name in sorted(expected.keys() & found.keys())
                      if not close(expected[name], found[name])]


def main(argv: list[str]) -> int:
    first, second = (open_run(uri) for uri in argv)
    differ = False
    for stage in STAGES:
        if not (first.exists(stage.output) and second.exists(stage.output)):
            print(f"{stage.name}: {stage.output} missing in one run")
            differ = True
            continue
        found = differences(first, second, stage.output)
        differ = differ or bool(found)
        print(f"{stage.name}: {stage.output} " + ("equal" if not found else "; ".join(found)))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
