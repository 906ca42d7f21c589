"""The one JPEG codec of the VLM's frames."""

from __future__ import annotations

import numpy as np

from dualvad.video.jpeg import decode_jpegs, encode_jpeg


def test_frames_round_trip_as_deterministic_jpegs_of_the_same_size():
    frame = np.random.default_rng(0).integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    frame[:, :20] = (200, 30, 30)  # a flat area survives JPEG nearly unchanged
    data = encode_jpeg(frame, 90)
    assert data[:2] == b"\xff\xd8" and encode_jpeg(frame, 90) == data
    (image,) = decode_jpegs([data])
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.shape == frame.shape
    assert np.abs(pixels[4:-4, 2:16].astype(int) - (200, 30, 30)).max() <= 8
    assert len(encode_jpeg(frame, 30)) < len(data)
