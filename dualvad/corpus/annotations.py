"""Readers for corpus annotation files: label lists, UCF-Crime, VERA's `UCF_Eval.json` and XD-Violence.

Every reader skips blank lines and whole-line `#` comments (a `#` inside a token is kept:
XD-Violence names contain one), and raises `CorpusFormatError` naming `<file>:<line>`, the
problem and the expected format. A label must be `Normal`, `unlabelled` or a known anomaly category
(:data:`dualvad.corpus.layout.KNOWN_CATEGORIES`, plus the reader's ``categories``: a corpus's own, from
``ingest.categories``), in any case and with or without `_` (:func:`~dualvad.corpus.layout.label_key`);
it is returned in its canonical spelling.

Frame intervals are returned half-open, `[start, end)`: the end frame written in a UCF-Crime
or XD-Violence file is treated as exclusive (the first frame after the event).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from dualvad.corpus.layout import (
    NORMAL_LABEL,
    SPLITS,
    UNLABELLED,
    VIDEO_EXTENSIONS,
    CorpusFormatError,
    Interval,
    format_error,
    has_video_extension,
    label_key,
    label_vocabulary,
)

Temporal = dict[str, tuple[str, tuple[Interval, ...]]]
"""video token -> (label, sorted half-open frame intervals)."""

XD_CATEGORIES: Mapping[str, str] = {
    "A": NORMAL_LABEL,
    "B1": "Fighting",
    "B2": "Shooting",
    "B4": "Riot",
    "B5": "Abuse",
    "B6": "Car accident",
    "G": "Explosion",
}
"""XD-Violence label codes (the part after `label_` in a video name) -> category."""

_LABEL_LIST_FORMAT = (
    "`<relative video path> <label>`, e.g. `Explosion/explosion_0001.mp4 Explosion`"
)
_UCF_TEMPORAL_FORMAT = (
    "`<video> <Class> <start1> <end1> <start2> <end2>` (frame indices, -1 = none), "
    "e.g. `Abuse028_x264.mp4  Abuse  165  240  -1  -1`"
)
_VERA_FORMAT = (
    'a JSON list of `{"video": "frames/<Category>/<file>", "temporal_label": [s1, e1, s2, e2], '
    '"length": <frames>}` (-1 = none), e.g. `{"video": "frames/Abuse/Abuse028_x264.mp4", '
    '"temporal_label": [165, 240, -1, -1], "length": 1412}`'
)
_UCF_TRAIN_FORMAT = "`<Category folder>/<video file>`, e.g. `Abuse/Abuse001_x264.mp4`"
_XD_FORMAT = "`<video> <start1> <end1> [<start2> <end2> ...]`, e.g. `name_label_B1-0-0 10 90`"


def _records(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield `(1-based line number, whitespace-separated tokens)` of the non-comment lines."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusFormatError(f"{path}: file not found; check the corpus path") from None
    except UnicodeDecodeError as exc:
        raise CorpusFormatError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if tokens and not tokens[0].startswith("#"):
            yield line_no, tokens


def _fail(path: object, line_no: int | None, problem: str, expected: str) -> CorpusFormatError:
    return CorpusFormatError(format_error(path, line_no, problem, expected))


def _canonical_label(token: str, vocabulary: Mapping[str, str], path: object, line_no: int | None,
                     expected: str) -> str:
    """The canonical spelling of label ``token`` (``vocabulary``: :func:`label_vocabulary`), matched by
    :func:`label_key` (`normal` -> `Normal`, `Road_Accidents` -> `RoadAccidents`); an unknown label is an
    error listing the valid ones."""
    label = vocabulary.get(label_key(token))
    if label is None:
        valid = sorted(set(vocabulary.values()) - {NORMAL_LABEL, UNLABELLED}, key=str.lower)
        raise _fail(path, line_no, f"unknown label {token!r}",
                    f"{NORMAL_LABEL}, {UNLABELLED} or an anomaly category: {', '.join(valid)} (a corpus "
                    f"with its own categories names them in ingest.categories, e.g. "
                    f"'ingest.categories=[Loitering]'); line format {expected}")
    return label


def _folder_label(folder: str, vocabulary: Mapping[str, str], path: object, line_no: int | None,
                  expected: str) -> str:
    """The label of a video from the folder holding it (UCF-Crime, VERA): `Normal` for a folder whose name
    contains `normal` (`Training_Normal_Videos_Anomaly`), else the folder name as a label."""
    if "normal" in folder.lower():
        return NORMAL_LABEL
    return _canonical_label(folder, vocabulary, path, line_no, expected)


def _video_path(token: str, path: object, line_no: int, expected: str) -> str:
    """Normalize a relative video path to posix form; reject absolute, `..` and non-video."""
    rel = token.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    parts = rel.split("/")
    if rel.startswith("/") or ":" in parts[0] or ".." in parts or "" in parts:
        raise _fail(path, line_no, f"{token!r} is not a relative path inside videos/", expected)
    if not has_video_extension(rel):
        raise _fail(
            path, line_no, f"{token!r} does not end with one of {VIDEO_EXTENSIONS}", expected
        )
    return rel


def _check_new(seen: dict[str, int], key: str, path: object, line_no: int, expected: str) -> None:
    if key in seen:
        raise _fail(path, line_no, f"{key!r} already listed on line {seen[key]}", expected)
    seen[key] = line_no


def read_label_list(path: str | os.PathLike[str], split: str,
                    categories: Iterable[str] = ()) -> dict[str, str]:
    """Read a video-level label list: one `<relative path> <label>` per line.

    Args:
        path: the list file, e.g. `<corpus>/annotations/train.txt`.
        split: `"train"` or `"test"`, the split the list describes (named in errors).
        categories: anomaly categories valid besides the known ones (``ingest.categories``).

    Returns:
        relative video path (posix separators) -> label (`"Normal"`, a category or `"unlabelled"`).
    """
    if split not in SPLITS:
        raise ValueError(f"read_label_list: split must be one of {SPLITS}, got {split!r}")
    vocabulary = label_vocabulary(categories)
    labels: dict[str, str] = {}
    seen: dict[str, int] = {}
    for line_no, tokens in _records(path):
        if len(tokens) != 2:
            raise _fail(
                path,
                line_no,
                f"{split} list line has {len(tokens)} field{'s' if len(tokens) > 1 else ''}",
                _LABEL_LIST_FORMAT,
            )
        video = _video_path(tokens[0], path, line_no, _LABEL_LIST_FORMAT)
        _check_new(seen, video, path, line_no, _LABEL_LIST_FORMAT)
        labels[video] = _canonical_label(tokens[1], vocabulary, path, line_no, _LABEL_LIST_FORMAT)
    return labels


def _parse_int(token: str, path: object, line_no: int | None, expected: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise _fail(path, line_no, f"frame index {token!r} is not an integer", expected) from None


def _intervals(
    tokens: list[str], path: object, line_no: int | None, expected: str, allow_none: bool
) -> tuple[Interval, ...]:
    """Parse `s1 e1 s2 e2 ...` into sorted half-open intervals (`-1 -1` pairs dropped)."""
    if len(tokens) % 2:
        raise _fail(path, line_no, f"odd number of frame indices ({len(tokens)})", expected)
    values = [_parse_int(t, path, line_no, expected) for t in tokens]
    out: list[Interval] = []
    for start, end in zip(values[::2], values[1::2], strict=True):
        if allow_none and start == -1 and end == -1:
            continue
        if start < 0 or end < 0:
            raise _fail(path, line_no, f"negative frame index in pair ({start}, {end})", expected)
        if start >= end:
            raise _fail(
                path,
                line_no,
                f"interval start {start} is not before end {end} (end is exclusive)",
                expected,
            )
        out.append((start, end))
    return tuple(sorted(out))


def _normal_without_intervals(
    label: str, intervals: tuple[Interval, ...], path: object, line_no: int | None, what: str,
    expected: str
) -> None:
    if label == NORMAL_LABEL and intervals:
        raise _fail(path, line_no, f"{what} has anomaly intervals", expected)


def read_ucf_temporal(path: str | os.PathLike[str], categories: Iterable[str] = ()) -> Temporal:
    """Read UCF-Crime temporal annotations: `<video> <Class> s1 e1 s2 e2` per line.

    Frame indices are 0-based; a `-1 -1` pair means no interval; any even number of indices
    is accepted. The end index is treated as exclusive: `(s, e)` covers frames `s .. e-1`.
    A `Normal` video may not carry intervals.

    Returns:
        video token as written -> (label, sorted half-open intervals; `()` when none).
    """
    vocabulary = label_vocabulary(categories)
    out: Temporal = {}
    seen: dict[str, int] = {}
    for line_no, tokens in _records(path):
        if len(tokens) < 2:
            raise _fail(path, line_no, f"line has {len(tokens)} field", _UCF_TEMPORAL_FORMAT)
        video = tokens[0]
        label = _canonical_label(tokens[1], vocabulary, path, line_no, _UCF_TEMPORAL_FORMAT)
        _check_new(seen, video, path, line_no, _UCF_TEMPORAL_FORMAT)
        intervals = _intervals(tokens[2:], path, line_no, _UCF_TEMPORAL_FORMAT, allow_none=True)
        _normal_without_intervals(label, intervals, path, line_no, "a Normal video",
                                  "`-1 -1 -1 -1` for Normal videos")
        out[video] = (label, intervals)
    return out


def read_vera_eval(path: str | os.PathLike[str],
                   categories: Iterable[str] = ()) -> tuple[Temporal, dict[str, int]]:
    """Read VERA's ground truth, `UCF_Eval.json`: a JSON list of `{video, temporal_label, length}`.

    The label is the folder holding the file (`frames/Abuse/Abuse028_x264.mp4` -> `Abuse`; a folder whose
    name contains `Normal` gives `"Normal"`). `temporal_label` pairs are frame indices, `-1 -1` = none, the
    end exclusive (VERA's evaluation sets `gt[s:e]`); `length` is the frame count VERA's protocol builds its
    frame curve and ground truth on. Other keys (`QA`) are ignored. Errors name the file and the entry
    (0-based).

    Returns:
        (video path as written -> (label, sorted half-open intervals), video path -> length).
    """
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusFormatError(f"{path}: file not found; check the corpus path") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusFormatError(f"{path}: not JSON ({exc}); expected {_VERA_FORMAT}") from None
    if not isinstance(entries, list):
        raise _fail(path, None, f"the top level is a {type(entries).__name__}", _VERA_FORMAT)
    vocabulary = label_vocabulary(categories)
    temporal: Temporal = {}
    lengths: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"{path} entry {index}"
        video, label, intervals, length = _vera_entry(entry, where, vocabulary)
        if video in temporal:
            raise _fail(where, None, f"{video!r} already listed", _VERA_FORMAT)
        temporal[video], lengths[video] = (label, intervals), length
    return temporal, lengths


def _vera_entry(entry: object, where: str,
                vocabulary: Mapping[str, str]) -> tuple[str, str, tuple[Interval, ...], int]:
    """(video, label, intervals, length) of one `UCF_Eval.json` entry, checked."""
    if not isinstance(entry, dict) or not {"video", "temporal_label", "length"} <= entry.keys():
        raise _fail(where, None, "not an object with `video`, `temporal_label` and `length`", _VERA_FORMAT)
    video, flat, length = entry["video"], entry["temporal_label"], entry["length"]
    if not isinstance(video, str) or not has_video_extension(video):
        raise _fail(where, None, f"`video` {video!r} is not a video file path", _VERA_FORMAT)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise _fail(where, None, f"`length` {length!r} is not a positive frame count", _VERA_FORMAT)
    if not isinstance(flat, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        raise _fail(where, None, f"`temporal_label` {flat!r} is not a list of frame indices", _VERA_FORMAT)
    rel = video.replace("\\", "/")
    folder = posixpath.basename(posixpath.dirname(rel))
    if not folder:
        raise _fail(where, None, f"{video!r} has no category folder", _VERA_FORMAT)
    label = _folder_label(folder, vocabulary, where, None, _VERA_FORMAT)
    intervals = _intervals([str(v) for v in flat], where, None, _VERA_FORMAT, allow_none=True)
    _normal_without_intervals(label, intervals, where, None, "a Normal video", "[-1, -1, -1, -1]")
    return rel, label, intervals, length


def read_ucf_train_list(path: str | os.PathLike[str], categories: Iterable[str] = ()) -> dict[str, str]:
    """Read UCF-Crime's `Anomaly_Train.txt`: one `<Category>/<file>` path per line.

    The label is the name of the folder holding the file, except that a folder whose name
    contains `Normal` (e.g. `Training_Normal_Videos_Anomaly`) gives the label `"Normal"`.

    Returns:
        relative video path (posix separators) -> label.
    """
    vocabulary = label_vocabulary(categories)
    labels: dict[str, str] = {}
    seen: dict[str, int] = {}
    for line_no, tokens in _records(path):
        if len(tokens) != 1:
            raise _fail(path, line_no, f"line has {len(tokens)} fields", _UCF_TRAIN_FORMAT)
        video = _video_path(tokens[0], path, line_no, _UCF_TRAIN_FORMAT)
        folder = posixpath.basename(posixpath.dirname(video))
        if not folder:
            raise _fail(path, line_no, f"{video!r} has no category folder", _UCF_TRAIN_FORMAT)
        _check_new(seen, video, path, line_no, _UCF_TRAIN_FORMAT)
        labels[video] = _folder_label(folder, vocabulary, path, line_no, _UCF_TRAIN_FORMAT)
    return labels


def xd_label(video: str) -> str:
    """The category of an XD-Violence video from its name: `..._label_B2-0-0` -> `Shooting`.

    The first code after `label_` decides (`A` = Normal); raises `ValueError` for a name
    without `label_` or an unknown code.
    """
    at = video.rfind("label_")
    if at < 0:
        raise ValueError(f"XD-Violence name {video!r} has no `label_<code>` part")
    code = video[at + len("label_") :]
    if has_video_extension(code):
        code = posixpath.splitext(code)[0]
    first = code.split("-")[0]
    if first not in XD_CATEGORIES:
        raise ValueError(
            f"XD-Violence name {video!r}: unknown label code {first!r}; "
            f"known codes are {sorted(XD_CATEGORIES)}"
        )
    return XD_CATEGORIES[first]


def read_xd_violence(path: str | os.PathLike[str]) -> Temporal:
    """Read XD-Violence annotations: `<video> s1 e1 [s2 e2 ...]` per line.

    The label comes from the name (see `xd_label`). A video may be listed without intervals;
    a Normal (`label_A`) video may not carry any. End indices are treated as exclusive.

    Returns:
        video token as written -> (label, sorted half-open intervals).
    """
    out: Temporal = {}
    seen: dict[str, int] = {}
    for line_no, tokens in _records(path):
        video = tokens[0]
        try:
            label = xd_label(video)
        except ValueError as exc:
            raise _fail(path, line_no, str(exc), _XD_FORMAT) from None
        _check_new(seen, video, path, line_no, _XD_FORMAT)
        intervals = _intervals(tokens[1:], path, line_no, _XD_FORMAT, allow_none=False)
        _normal_without_intervals(label, intervals, path, line_no, "a label_A (Normal) video",
                                  "no intervals for label_A videos")
        out[video] = (label, intervals)
    return out
