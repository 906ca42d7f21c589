"""Per-video feature files in the published layouts, checked, and pooled into K segments (no Ray).

The published UCF-Crime and XD-Violence feature sets (DeepMIL, RTFM, UR-DMU, VadCLIP, PEL4VAD) and
``dualvad extract-features`` store one 16-frame snippet per row:

* ``crops``: ``<stem>__<crop>.npy``, one file per crop, each ``(T, D)`` (I3D 10- and 5-crop, CLIP 10-crop);
* ``stacked``: ``<stem>.npy`` of shape ``(T, C, D)`` (RTFM's I3D ResNet-50, C = 10);
* ``single``: ``<stem>.npy`` of shape ``(T, D)`` (one crop).

``<stem>`` is the video's file name without its extension; files may sit in sub-folders. A video is found
by its relative path without extension first (``Abuse/Abuse001_x264``), else by its bare stem when that is
unique in the folder. :func:`scan_features` reads only the ``.npy`` headers and decides, per video, its
files, layout and shape, or why it has none usable; :func:`load_features` reads the arrays (and checks their
values); :func:`pool_snippets` averages snippets into segments.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SNIPPET_FRAMES = 16  # frames per snippet in every published feature set (I3D's and CLIP's alike)
FEATURE_SUFFIX = ".npy"
CROP_SEPARATOR = "__"
_CROP_NAME = re.compile(r"^(?P<stem>.+)__(?P<crop>\d+)\.npy$")
LAYOUTS = ("auto", "crops", "stacked", "single")  # ingest.features_layout; "auto": from names and ranks


@dataclass(frozen=True)
class VideoFeatureFiles:
    """One video's feature files as their headers describe them.

    ``files`` in crop order (one file for ``stacked`` and ``single``); ``shape`` is ``(T, C, D)`` whatever
    the layout (C = 1 for ``single``); ``problem`` is why the video cannot be used (``None``: usable)."""

    video_id: str
    files: tuple[str, ...]
    layout: str
    shape: tuple[int, int, int] | None
    problem: str | None = None


def stem_of(video_id: str) -> str:
    """The feature stem of a video id: its relative path without the video extension
    (``Abuse/Abuse001_x264.mp4`` -> ``Abuse/Abuse001_x264``; XD-Violence's dots inside names are kept)."""
    root, ext = posixpath.splitext(video_id)
    return root if ext.lower() in (".mp4", ".avi", ".mkv", ".mov", ".webm") else video_id


def list_feature_files(folder: str) -> list[str]:
    """Relative posix paths of every ``.npy`` file under local folder ``folder`` (sorted).

    Raises:
        FileNotFoundError: ``folder`` is not a folder; the message names it and the setting.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such feature folder (ingest.features / --features); pass the "
                                "folder holding the .npy feature files")
    found = []
    for base, _dirs, names in os.walk(folder):
        for name in names:
            if name.endswith(FEATURE_SUFFIX):
                found.append(os.path.relpath(os.path.join(base, name), folder).replace(os.sep, "/"))
    return sorted(found)


def _index(files: Iterable[str]) -> tuple[dict[str, dict[int, str]], dict[str, str], dict[str, list[str]]]:
    """(stem path -> {crop: file}, stem path -> plain file, bare stem -> stem paths)."""
    crops: dict[str, dict[int, str]] = {}
    plain: dict[str, str] = {}
    for rel in files:
        folder, name = posixpath.split(rel)
        match = _CROP_NAME.match(name)
        if match:
            crops.setdefault(posixpath.join(folder, match["stem"]), {})[int(match["crop"])] = rel
        else:
            plain[posixpath.join(folder, name[: -len(FEATURE_SUFFIX)])] = rel
    bare: dict[str, list[str]] = {}
    for stem in {*crops, *plain}:
        bare.setdefault(posixpath.basename(stem), []).append(stem)
    return crops, plain, bare


def _find_stem(video_id: str, crops: dict, plain: dict, bare: dict[str, list[str]]) -> str | list[str] | None:
    """The feature stem path of ``video_id``: by relative path, else its unique bare stem (several
    matches: the list of them; none: ``None``)."""
    stem = stem_of(video_id)
    if stem in crops or stem in plain:
        return stem
    matches = sorted(bare.get(posixpath.basename(stem), []))
    return matches[0] if len(matches) == 1 else (matches or None)


def read_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a ``.npy`` file's header, without reading its data.

    Raises:
        ValueError: not a ``.npy`` file (an empty or truncated file included).
    """
    with open(path, "rb") as file:
        try:
            major, _ = np.lib.format.read_magic(file)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(file)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"not a .npy array file ({error})") from None
    return tuple(int(n) for n in shape), np.dtype(dtype)


def scan_features(folder: str, video_ids: Iterable[str], layout: str = "auto") -> list[VideoFeatureFiles]:
    """Each video's feature files under local ``folder``, from the ``.npy`` headers alone.

    A video's problem (it then has no usable features) is: no file; files of both kinds where ``layout`` is
    ``auto`` (name the layout); missing crops (a crop index below the highest one any video has, absent);
    an unreadable header (an empty file included); a dtype that is not floating point; a rank other than
    the layout's; T = 0 snippets; crops of different T or D; and, once every video is read, a C or D that
    differs from the one most videos have.
    """
    crops, plain, bare = _index(list_feature_files(folder))
    found = [_video_files(folder, vid, crops, plain, bare, layout) for vid in video_ids]
    crop_count = max((max(_crop_indices(v)) + 1 for v in found if v.layout == "crops" and v.files), default=0)
    found = [_check_crops(v, crop_count) if v.layout == "crops" and v.problem is None else v for v in found]
    found = [_with_shape(folder, v) if v.problem is None else v for v in found]
    return _check_common_shape(found)


def _crop_indices(video: VideoFeatureFiles) -> list[int]:
    return [int(_CROP_NAME.match(posixpath.basename(f))["crop"]) for f in video.files]


def _video_files(folder: str, video_id: str, crops: dict, plain: dict, bare: dict,
                 layout: str) -> VideoFeatureFiles:
    stem = _find_stem(video_id, crops, plain, bare)
    if stem is None:
        stem = stem_of(video_id)
        expected = f"{stem}{CROP_SEPARATOR}0{FEATURE_SUFFIX} or {stem}{FEATURE_SUFFIX}"
        return VideoFeatureFiles(video_id, (), layout, None, f"no feature file under {folder} (looked for "
                                 f"{expected}, also by file name in sub-folders)")
    if isinstance(stem, list):
        return VideoFeatureFiles(video_id, (), layout, None, f"its name matches feature files of several "
                                 f"videos under {folder} ({', '.join(stem[:5])}); put them in the video's "
                                 "relative folder")
    per_crop, single = crops.get(stem, {}), plain.get(stem)
    if layout == "auto" and per_crop and single:
        return VideoFeatureFiles(video_id, (), layout, None, f"both {single} and per-crop files "
                                 f"{stem}{CROP_SEPARATOR}N{FEATURE_SUFFIX}: name the layout with "
                                 "ingest.features_layout (crops, stacked or single)")
    if layout in ("crops", "auto") and per_crop:
        return VideoFeatureFiles(video_id, tuple(per_crop[c] for c in sorted(per_crop)), "crops", None)
    if layout != "crops" and single:
        return VideoFeatureFiles(video_id, (single,), layout, None)
    wanted = "per-crop files" if layout == "crops" else "a single file"
    return VideoFeatureFiles(video_id, (), layout, None, f"no {wanted} for stem {stem} under {folder} "
                             f"(ingest.features_layout={layout})")


def _check_crops(video: VideoFeatureFiles, crop_count: int) -> VideoFeatureFiles:
    missing = sorted(set(range(crop_count)) - set(_crop_indices(video)))
    if not missing:
        return video
    stem = video.files[0].rsplit(CROP_SEPARATOR, 1)[0]
    names = ", ".join(f"{stem}{CROP_SEPARATOR}{c}{FEATURE_SUFFIX}" for c in missing)
    return VideoFeatureFiles(video.video_id, video.files, video.layout, None,
                             f"missing crop file(s) {names} (other videos have crops 0-{crop_count - 1})")


def _with_shape(folder: str, video: VideoFeatureFiles) -> VideoFeatureFiles:
    """``video`` with its (T, C, D) from the headers, or the problem they show."""
    shapes = []
    for rel in video.files:
        try:
            shape, dtype = read_header(os.path.join(folder, rel))
        except ValueError as error:
            return _problem(video, f"{rel}: {error}")
        if dtype.kind != "f":
            return _problem(video, f"{rel}: dtype {dtype}, expected floating point (float32)")
        rank = 3 if video.layout == "stacked" else 2 if video.layout in ("crops", "single") else None
        if len(shape) not in ((2, 3) if rank is None else (rank,)):
            wanted = {2: "(T, D)", 3: "(T, C, D)"}.get(rank, "(T, D) or (T, C, D)")
            return _problem(video, f"{rel}: shape {shape}, expected {wanted}")
        if 0 in shape:
            return _problem(video, f"{rel}: shape {shape} holds no snippet")
        shapes.append(shape)
    if len({(s[0], s[-1]) for s in shapes}) > 1:
        return _problem(video, "its crops differ in snippets or dimension: " + ", ".join(
            f"{rel} {shape}" for rel, shape in zip(video.files, shapes, strict=True)))
    t, d = shapes[0][0], shapes[0][-1]
    c = len(shapes) if video.layout == "crops" else (shapes[0][1] if len(shapes[0]) == 3 else 1)
    layout = video.layout if video.layout != "auto" else ("stacked" if len(shapes[0]) == 3 else "single")
    return VideoFeatureFiles(video.video_id, video.files, layout, (t, c, d))


def _problem(video: VideoFeatureFiles, problem: str) -> VideoFeatureFiles:
    return VideoFeatureFiles(video.video_id, video.files, video.layout, None, problem)


def _check_common_shape(videos: list[VideoFeatureFiles]) -> list[VideoFeatureFiles]:
    """Mark the videos whose (C, D) is not the one most usable videos have (ties: the first seen)."""
    common = Counter(v.shape[1:] for v in videos if v.shape is not None).most_common(1)
    if not common:
        return videos
    crops, dim = common[0][0]
    return [v if v.shape is None or v.shape[1:] == (crops, dim) else
            _problem(v, f"{v.files[0]}: {v.shape[1]} crops of dimension {v.shape[2]}, the other videos have "
                        f"{crops} of dimension {dim}") for v in videos]


def load_features(folder: str, video: VideoFeatureFiles) -> np.ndarray:
    """The video's features as float32 ``(T, C, D)``.

    Raises:
        ValueError: a file cannot be read, its shape is not the header's, or it holds a NaN or an infinity;
            the message names the file.
    """
    parts = []
    for rel in video.files:
        try:
            with open(os.path.join(folder, rel), "rb") as file:
                array = np.load(io.BytesIO(file.read()), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{rel}: cannot be read ({error})") from None
        bad = ~np.isfinite(array)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{rel}: {int(bad.sum())} values are NaN or infinite (the first at {where})")
        parts.append(array.astype(np.float32, copy=False))
    stacked = np.stack(parts, axis=1) if video.layout == "crops" else parts[0]
    return stacked.reshape(stacked.shape[0], -1, stacked.shape[-1])


def pool_snippets(features: np.ndarray, segments: int | None, num_frames: int | None = None,
                  snippet: int = SNIPPET_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Snippet features ``(T, C, D)`` -> (segment features float32 ``(K, C, D)``, frame bounds int64
    ``(K, 2)``).

    ``segments`` K: average pooling as RTFM's and UR-DMU's ``process_feat``: segment ``i`` averages
    snippets ``[floor(i T / K), floor((i + 1) T / K))`` and spans their ``16 x`` frames, the last one to
    ``num_frames`` (the video's frame count where known; default ``16 T``). Where T < K, the frames are cut
    into K equal segments (``[floor(i F / K), floor((i + 1) F / K))``, F = ``num_frames``) and each takes the
    snippet holding its first frame: with F = 16 T that is snippet ``floor(i T / K)``, RTFM's repetition.
    ``None``: one segment per snippet.

    Raises:
        ValueError: fewer frames than segments, or ``num_frames`` ending before the last segment starts.
    """
    count = len(features)
    frames = snippet * count if num_frames is None else num_frames
    k = count if segments is None else segments
    if frames < k:
        raise ValueError(f"{count} snippets of a video of {frames} frames cannot fill {k} segments: lower "
                         "ingest.segments to at most the frame count, or leave the video out")
    if count >= k:
        edges = (np.arange(k + 1, dtype=np.int64) * count) // k
        pooled = np.stack([features[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:], strict=True)])
        frame_edges = edges * snippet
    else:
        frame_edges = (np.arange(k + 1, dtype=np.int64) * frames) // k
        pooled = features[np.minimum(frame_edges[:-1] // snippet, count - 1)]
    if frames <= frame_edges[-2]:
        raise ValueError(f"the video has {frames} frames but its {count} snippets' last segment starts at "
                         f"frame {int(frame_edges[-2])}: the features are of a longer video")
    frame_edges[-1] = frames
    return pooled.astype(np.float32), np.stack([frame_edges[:-1], frame_edges[1:]], axis=1)


def save_features(folder: str, video_id: str, features: np.ndarray, layout: str) -> list[str]:
    """Write one video's snippet features float32 ``(T, C, D)`` under ``folder`` in ``layout`` (``crops``,
    ``stacked``, or ``single`` for C = 1), at the video's relative path without extension; returns the
    relative paths written.

    Raises:
        ValueError: ``single`` with C > 1, or an unknown layout.
    """
    stem = stem_of(video_id)
    os.makedirs(os.path.join(folder, posixpath.dirname(stem)), exist_ok=True)
    features = np.asarray(features, dtype=np.float32)
    if layout == "crops":
        arrays = {f"{stem}{CROP_SEPARATOR}{c}{FEATURE_SUFFIX}": features[:, c]
                  for c in range(features.shape[1])}
    elif layout == "stacked":
        arrays = {f"{stem}{FEATURE_SUFFIX}": features}
    elif layout == "single" and features.shape[1] == 1:
        arrays = {f"{stem}{FEATURE_SUFFIX}": features[:, 0]}
    else:
        raise ValueError(f"cannot write {features.shape[1]} crops in layout {layout!r}; choose crops or "
                         "stacked (single holds one crop)")
    for rel, array in arrays.items():
        np.save(os.path.join(folder, rel), np.ascontiguousarray(array))
    return sorted(arrays)
