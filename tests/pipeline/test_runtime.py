"""A private name of Ray that dualvad relies on (pipeline/runtime.py), checked against the Ray installed."""

from __future__ import annotations


def test_the_progress_notice_logger_is_the_one_ray_data_warns_under():
    from ray.data._internal import progress

    from dualvad.pipeline.runtime import RAY_DATA_PROGRESS_LOGGER

    assert progress.logger.name == RAY_DATA_PROGRESS_LOGGER  # a Ray upgrade that moves it fails here
