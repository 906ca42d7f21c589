"""The settings an earlier stage's output was made with, read from its record as today's code reads them: a
key the record predates takes the value that stage used before the key existed (records keep the settings
of their day)."""

from __future__ import annotations

from dualvad import paths
from dualvad.rundir import RunDir
from dualvad.stages.records import input_fingerprint, read_record
from dualvad.video.config import SETTINGS_BEFORE, IngestConfig
from dualvad.video.sampling import NO_DECODE_WINDOW, SAMPLE_SETTINGS_BEFORE, DecodeWindow, SampleConfig


def recorded_sample_settings(run: RunDir) -> SampleConfig:
    """The ``sample.*`` settings ``RUN/samples`` was made with (a key the record predates reads as
    :data:`~dualvad.video.sampling.SAMPLE_SETTINGS_BEFORE` says).

    Raises:
        MissingInputError: the run has no samples (naming the stage to run).
    """
    input_fingerprint(run, paths.SAMPLES)  # raises with the fix when the samples are missing
    return SampleConfig(**{**SAMPLE_SETTINGS_BEFORE, **read_record(run, paths.SAMPLES)["settings"]})


def recorded_ingest_settings(run: RunDir) -> IngestConfig:
    """The ``ingest.*`` settings ``RUN/segments`` was made with (a key the record predates reads as
    :data:`~dualvad.video.config.SETTINGS_BEFORE` says).

    Raises:
        MissingInputError: the run has no segments (naming the stage to run).
    """
    input_fingerprint(run, paths.SEGMENTS)  # raises with the fix when the segments are missing
    return _ingest_settings(read_record(run, paths.SEGMENTS)["settings"])


def _ingest_settings(recorded: dict[str, object]) -> IngestConfig:
    return IngestConfig(**{**SETTINGS_BEFORE, **recorded})


def recorded_decode_window(run: RunDir) -> DecodeWindow:
    """The decode window ``RUN/segments`` was ingested with: ``ingest.decode_window_s`` (0 for a run ingested
    before the key existed: its pairs were spread; 0 when the run has no ingest record) and its anchors
    (``ingest.frames_per_segment // 2``)."""
    record = read_record(run, paths.SEGMENTS)
    if record is None:
        return NO_DECODE_WINDOW
    return DecodeWindow.of(_ingest_settings(record["settings"]))
