"""One line per fault scenario, printed by the fault tests and gathered into a table by ``bench/faults.py``.

A test prints ``fault-record: {json}`` (pytest shows it with ``-s``); the record's keys are the table's
columns. Printing is all this does: the test's assertions decide whether the scenario passed.
"""

from __future__ import annotations

import json
import os

PREFIX = "fault-record: "


def record_fault(fault: str, outcome: str, *, rows_lost: int | None = None,
                 rows_duplicated: int | None = None, requests_failed: int | None = None,
                 recovery_s: float | None = None) -> None:
    """Print one scenario's figures (``None``: does not apply), with the test that printed them (pytest's
    ``PYTEST_CURRENT_TEST``): the bench marks the figures of a test that then failed."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    print(PREFIX + json.dumps({"test": test, "fault": fault, "outcome": outcome, "rows_lost": rows_lost,
                               "rows_duplicated": rows_duplicated, "requests_failed": requests_failed,
                               "recovery_s": None if recovery_s is None else round(recovery_s, 1)}),
          flush=True)
