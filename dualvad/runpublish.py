"""Publishing a stage's staged output as ``RUN/<output>``: the earlier output is replaced only once the
new one is whole, and a publish cut short is put right by the next stage on the run."""

from __future__ import annotations

import logging
import uuid

import pyarrow.fs as pafs

from dualvad import paths
from dualvad.rundir import RunDir

log = logging.getLogger(__name__)

REPLACED = ".replaced-"  # RUN/.work/<output>.replaced-<token>: an earlier output while its successor moves in


def publish(run: RunDir, output: str, staged: RunDir, scratch: RunDir) -> None:
    """``staged`` becomes ``RUN/<output>`` and ``scratch`` is deleted; the earlier output is moved aside
    first and deleted after. Should the move into place fail, the earlier output goes back; a process
    killed between the two moves leaves it in ``RUN/.work/<output>.replaced-*``, which the next stage on
    the run puts back (:func:`restore_replaced`).

    On object storage each move is a copy and a delete (:meth:`RunDir.move_dir`) with ``_stage.json``
    copied last: an output is published once its ``_stage.json`` is there, and a stage reading it
    (:func:`dualvad.stages.records.input_fingerprint`) never sees one half-copied."""
    replaced = None
    if run.exists(output):
        replaced = run.path(paths.WORK_DIR, f"{output}{REPLACED}{uuid.uuid4().hex[:8]}")
        run.move_dir(run.path(output), replaced, marker=paths.STAGE_FILE)
    try:
        run.move_dir(staged.path(), run.path(output), marker=paths.STAGE_FILE)
    except BaseException:
        if replaced is not None and not _published(run, output):
            _drop_partial(run, output)
            run.move_dir(replaced, run.path(output), marker=paths.STAGE_FILE)
        raise
    if replaced is not None:
        run.fs.delete_dir(replaced)
    if scratch.exists():
        run.fs.delete_dir(scratch.path())


def _published(run: RunDir, output: str) -> bool:
    """``RUN/<output>`` is whole: renamed into place (local disk) or copied up to its marker (object
    storage, where a half-copied folder has no ``_stage.json``)."""
    return run.exists(output) if run.local else run.exists(output, paths.STAGE_FILE)


def _drop_partial(run: RunDir, output: str) -> None:
    """Delete what a copy that did not finish left at ``RUN/<output>`` (object storage only)."""
    if run.exists(output):
        run.fs.delete_dir(run.path(output))


def restore_replaced(run: RunDir) -> None:
    """Put back an earlier output that a killed publish left moved aside (``RUN/<output>`` missing or,
    on object storage, half-copied); one whose replacement was published is deleted, as the publish
    would have."""
    selector = pafs.FileSelector(run.path(paths.WORK_DIR), allow_not_found=True)
    for info in sorted(run.fs.get_file_info(selector), key=lambda i: i.path):
        output, marker, _ = info.base_name.partition(REPLACED)
        if not marker or info.type != pafs.FileType.Directory:
            continue
        if _published(run, output):
            run.fs.delete_dir(info.path)
        else:
            log.warning("%s: putting back %s, moved aside by a publish that did not finish",
                        run.path(output), info.path)
            _drop_partial(run, output)
            run.move_dir(info.path, run.path(output), marker=paths.STAGE_FILE)
