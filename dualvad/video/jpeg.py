"""The JPEG codec of the frames the VLM sees: encoded once (the benchmarks store them, the detector's
Analyzer sends them to its Judge, the evaluation stage re-creates them), decoded back to RGB before the VLM.

Every producer and consumer goes through these two functions, so one video's frames are the same pixels in
fine-tuning, evaluation and serving.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB uint8 (H, W, 3) frame (PIL, fixed settings: deterministic)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def decode_jpegs(blobs: Iterable[bytes]) -> list[Image.Image]:
    """JPEG bytes -> RGB PIL images, fully decoded (the file handles are closed)."""
    images = []
    for data in blobs:
        with Image.open(io.BytesIO(data)) as image:
            images.append(image.convert("RGB"))
    return images
