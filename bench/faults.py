"""Faults, one table: each scenario of the fault tests run for real, with what it lost, doubled or failed.

Runs the fault tests (issue 17) in one pytest session on a local Ray and gathers the ``fault-record:`` line
each prints (``tests/faultlog.py``) into one table: fault, outcome, rows lost, rows duplicated, requests
failed, recovery seconds. A scenario whose test failed is listed as FAILED with the test's name: the
figures count only when the test's assertions held.

    python bench/faults.py                 # every scenario (about 10 minutes on 2 cores)
    python bench/faults.py -k serve        # a subset, by pytest -k expression
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from faultlog import PREFIX  # noqa: E402 - the tests' folder is on the path only from here

# the tests that print a fault record
SCENARIOS = [
    "tests/pipeline/test_worker_loss.py",
    "tests/pipeline/test_hostile_corpus.py",
    "tests/pipeline/test_stage_faults.py",
    "tests/train/test_finetune.py::test_a_killed_worker_is_replaced_and_training_resumes_from_the_last_checkpoint",
    "tests/serve/test_http.py::test_a_killed_replica_fails_only_its_requests_in_flight_and_serve_recovers",
    "tests/serve/test_streams.py::test_a_killed_streams_replica_has_its_stream_re_opened_and_no_event_doubled",
]
COLUMNS = ("fault", "outcome", "rows_lost", "rows_duplicated", "requests_failed", "recovery_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default=None, help="only the scenarios matching this pytest -k expression")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "-rf", *SCENARIOS]
    if args.k:
        command += ["-k", args.k]
    print("running:", " ".join(command[3:]), flush=True)
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    # a record may follow pytest's progress dots on its line
    records = [json.loads(line.split(PREFIX, 1)[1]) for line in run.stdout.splitlines() if PREFIX in line]
    failed = re.findall(r"^FAILED (\S+)", run.stdout, re.MULTILINE)
    print(_table(records, failed))
    tail = [line for line in run.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print(tail[-1] if tail else run.stdout[-2000:] + run.stderr[-2000:])
    sys.exit(run.returncode)


def _table(records: list[dict], failed: list[str]) -> str:
    """A Markdown table of the records (a failed test's outcome says so: its figures do not count), then one
    FAILED row per failed test that printed none."""
    rows = [COLUMNS, tuple("---" for _ in COLUMNS)]
    for record in records:
        if record["test"] in failed:
            record = {**record, "outcome": f"TEST FAILED ({record['test']}): {record['outcome']}"}
        rows.append(tuple("n/a" if record[c] is None else str(record[c]) for c in COLUMNS))
    recorded = {record["test"] for record in records}
    rows += [(f"FAILED {name}", "test failed before its figures", "", "", "", "")
             for name in failed if name not in recorded]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


if __name__ == "__main__":
    main()
