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
    ANNOTATIONS_DIR,
    NORMAL_LABEL,
    SPLITS,
    TEMPORAL_FILE,
    TEST_LIST,
    TRAIN_LIST,
    UCF_TEMPORAL_FILE,
    UCF_TRAIN_LIST,
    UNLABELLED,
    VERA_EVAL_FILE,
    VIDEO_EXTENSIONS,
    VIDEOS_DIR,
    CorpusFormatError,
    Interval,
    VideoRecord,
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
_MAX_LISTED = 5


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


# --------------------------------------------------------------------------- read_corpus

_Entry = tuple[str, str, str, tuple[Interval, ...] | None, int | None]
"""(video_id, label, split, intervals, annotated frame count) before the file check."""


def _preview(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown} (and {more} more)" if more > 0 else shown


def _by_basename(video_ids: list[str]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for vid in video_ids:
        index.setdefault(posixpath.basename(vid), []).append(vid)
    return index


def _resolve(token: str, listed: list[str], index: dict[str, list[str]], source: object) -> str:
    """The listed video id a temporal token names: exact relative path, else unique basename."""
    rel = token.replace("\\", "/")
    if rel in listed:
        return rel
    candidates = index.get(posixpath.basename(rel), [])
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise CorpusFormatError(
            f"{source}: video {token!r} matches several videos by name ({_preview(candidates)}); "
            "write its path relative to videos/ instead"
        )
    raise CorpusFormatError(
        f"{source}: video {token!r} is not listed in the test list; add it there or remove it"
    )


def _match_temporal(
    temporal: Temporal, lengths: dict[str, int], test: dict[str, str], source: object
) -> tuple[dict[str, tuple[Interval, ...]], dict[str, int]]:
    """Map temporal entries (and their annotated frame counts, where ``lengths`` has them) onto test video
    ids (by relative path, else by basename): (video id -> intervals, video id -> frame count)."""
    listed = sorted(test)
    index = _by_basename(listed)
    matched: dict[str, tuple[Interval, ...]] = {}
    frames: dict[str, int] = {}
    for token, (label, intervals) in temporal.items():
        vid = _resolve(token, listed, index, source)
        if vid in matched:
            raise CorpusFormatError(f"{source}: video {vid!r} is annotated twice")
        if label != test[vid]:
            raise CorpusFormatError(
                f"{source}: video {token!r} has class {label!r} but the test list labels it "
                f"{test[vid]!r}; make the two agree"
            )
        matched[vid] = intervals
        if token in lengths:
            frames[vid] = lengths[token]
    return matched, frames


def _check_disjoint(train: dict[str, str], test: dict[str, str], ann: Path) -> None:
    both = sorted(train.keys() & test.keys())
    if both:
        raise CorpusFormatError(
            f"{ann}: {len(both)} videos are listed in both the train and the test list: "
            f"{_preview(both)}; a video belongs to one split"
        )


def _temporal_source(ann: Path, temporal_name: str,
                     categories: Iterable[str]) -> tuple[Temporal, dict[str, int], Path] | None:
    """The test videos' temporal annotation: ``temporal_name`` (UCF-Crime format) or VERA's
    `UCF_Eval.json` (which adds frame counts), whichever `ann` holds; both at once is an error."""
    temporal_path, vera_path = ann / temporal_name, ann / VERA_EVAL_FILE
    if temporal_path.is_file() and vera_path.is_file():
        raise CorpusFormatError(f"{ann}: both {temporal_name} and {VERA_EVAL_FILE} annotate the test videos; "
                                "keep one of them")
    if vera_path.is_file():
        return (*read_vera_eval(vera_path, categories), vera_path)
    if temporal_path.is_file():
        return read_ucf_temporal(temporal_path, categories), {}, temporal_path
    return None


def _folder_entries(ann: Path, categories: Iterable[str]) -> list[_Entry]:
    """Entries of the folder layout: train.txt, test.txt and optional test_temporal.txt (or
    UCF_Eval.json)."""
    train_path, test_path = ann / TRAIN_LIST, ann / TEST_LIST
    train = read_label_list(train_path, "train", categories) if train_path.is_file() else {}
    test = read_label_list(test_path, "test", categories) if test_path.is_file() else {}
    _check_disjoint(train, test, ann)
    temporal: dict[str, tuple[Interval, ...]] = {}
    frames: dict[str, int] = {}
    source = _temporal_source(ann, TEMPORAL_FILE, categories)
    if source is not None:
        annotated, lengths, path = source
        temporal, frames = _match_temporal(annotated, lengths, test, path)
    entries: list[_Entry] = [(vid, label, "train", None, None) for vid, label in train.items()]
    entries += [(vid, label, "test", temporal.get(vid), frames.get(vid)) for vid, label in test.items()]
    return entries


def _video_files(videos: Path) -> list[str]:
    """Relative posix paths of every video file under `videos` (sorted)."""
    if not videos.is_dir():
        return []
    found = (p.relative_to(videos).as_posix() for p in videos.rglob("*") if p.is_file())
    return sorted(rel for rel in found if has_video_extension(rel))


def _ucf_entries(ann: Path, videos: object, on_disk: list[str], categories: Iterable[str]) -> list[_Entry]:
    """Entries of the real UCF-Crime layout: Anomaly_Train.txt and the temporal test file (or VERA's
    UCF_Eval.json).

    The test videos are those of the temporal file; each token is found under `videos/` by
    its relative path, else by its file name (UCF-Crime lists test videos by name only).
    """
    train_path = ann / UCF_TRAIN_LIST
    train = read_ucf_train_list(train_path, categories) if train_path.is_file() else {}
    temporal, lengths, temporal_path = _temporal_source(ann, UCF_TEMPORAL_FILE, categories) or ({}, {}, ann)
    index = _by_basename(on_disk)
    test: dict[str, tuple[str, tuple[Interval, ...], int | None]] = {}
    for token, (label, intervals) in temporal.items():
        rel = token.replace("\\", "/")
        found = index.get(posixpath.basename(rel), [])
        if rel not in on_disk and len(found) > 1:
            raise CorpusFormatError(
                f"{temporal_path}: video {token!r} matches several files under {videos} "
                f"({_preview(found)}); write its path relative to videos/ instead"
            )
        vid = rel if rel in on_disk or not found else found[0]
        test[vid] = (label, intervals, lengths.get(token))
    _check_disjoint(train, dict.fromkeys(test, ""), ann)
    entries: list[_Entry] = [(vid, label, "train", None, None) for vid, label in train.items()]
    entries += [(vid, label, "test", iv, length) for vid, (label, iv, length) in test.items()]
    return entries


def _records_from(videos: object, on_disk: set[str], entries: list[_Entry], path_of) -> list[VideoRecord]:
    """Check every listed file is among ``on_disk`` (under ``videos``) and build the sorted records, each
    file's path given by ``path_of(relative path)``."""
    missing = sorted(vid for vid, *_ in entries if vid not in on_disk)
    if missing:
        raise CorpusFormatError(
            f"{len(missing)} listed videos are missing under {videos}: {_preview(missing)}; "
            "put the files there or remove them from the annotation lists"
        )
    records = [
        VideoRecord(vid, path_of(vid), label, split, intervals, frames)
        for vid, label, split, intervals, frames in entries
    ]
    return sorted(records, key=lambda r: (r.split, r.video_id))


def read_corpus(root: str | os.PathLike[str], categories: Iterable[str] = ()) -> list[VideoRecord]:
    """Read a corpus folder (`videos/` + `annotations/`) into records sorted by (split, id).

    `annotations/` holds either `train.txt` / `test.txt` (at least one) with an optional
    `test_temporal.txt`, or the real UCF-Crime files `Anomaly_Train.txt` and
    `Temporal_Anomaly_Annotation_for_Testing_Videos.txt` (whose videos form the test split). In either
    layout VERA's `UCF_Eval.json` may stand in for the temporal file; its `length` becomes the record's
    `annotated_frames`. Test videos without a temporal entry get `intervals=None`; train videos always do.

    A folder without `annotations/` is a corpus of your own, unlabelled videos: every video file under
    its `videos/` (or, without one, under the folder itself) is a test video labelled `unlabelled`.

    `root` may be a pyarrow filesystem URI (`s3://bucket/ucf-crime`): the annotation files are read
    through a local copy, the videos listed on that filesystem, and each record's `path` is the
    video's URI (decoding copies it, see :func:`dualvad.video.decode.open_video`).

    Args:
        categories: anomaly categories valid besides the known ones (``ingest.categories``).

    Raises:
        CorpusFormatError: no annotation files (and no videos), a malformed line, an unknown label, a
            temporal entry for a video that is not listed, or listed videos missing from `videos/`.
    """
    if "://" in str(root):
        return _read_remote_corpus(str(root), categories)
    root = Path(root)
    if not root.is_dir():
        raise CorpusFormatError(f"{root}: no such corpus folder; pass a folder with videos/ and "
                                "annotations/, or a folder of videos")
    ann, videos = root / ANNOTATIONS_DIR, root / VIDEOS_DIR
    if not ann.is_dir():
        videos = videos if videos.is_dir() else root
        return _unlabelled(root, videos, _video_files(videos), lambda vid: os.path.abspath(videos / vid))
    return _read_layout(root, ann, videos, _video_files(videos), lambda vid: os.path.abspath(videos / vid),
                        categories)


def _unlabelled(root: object, videos: object, on_disk: list[str], path_of) -> list[VideoRecord]:
    """Every video under ``videos`` (relative paths ``on_disk``) as an `unlabelled` test video."""
    if not on_disk:
        raise CorpusFormatError(
            f"{root}: no {ANNOTATIONS_DIR}/ folder and no video file ({', '.join(VIDEO_EXTENSIONS)}) under "
            f"{videos}; put your videos there (they are read as unlabelled), or label them in "
            f"{root}/{ANNOTATIONS_DIR}/{TRAIN_LIST} and {TEST_LIST} (`<relative video path> <label>` lines; "
            f"or the UCF-Crime files {UCF_TRAIN_LIST}, {UCF_TEMPORAL_FILE})")
    return [VideoRecord(vid, path_of(vid), UNLABELLED, "test") for vid in on_disk]


def _read_layout(root: object, ann: Path, videos: object, on_disk: list[str], path_of,
                 categories: Iterable[str]) -> list[VideoRecord]:
    """Records of a corpus whose annotation files are in local folder ``ann`` and whose videos (relative
    paths ``on_disk``) are under ``videos``."""
    if (ann / TRAIN_LIST).is_file() or (ann / TEST_LIST).is_file():
        entries = _folder_entries(ann, categories)
    elif any((ann / name).is_file() for name in (UCF_TRAIN_LIST, UCF_TEMPORAL_FILE, VERA_EVAL_FILE)):
        entries = _ucf_entries(ann, videos, on_disk, categories)
    else:
        raise CorpusFormatError(
            f"{root}: no annotation lists found; looked for {ann / TRAIN_LIST}, "
            f"{ann / TEST_LIST} (or the UCF-Crime files {UCF_TRAIN_LIST}, {UCF_TEMPORAL_FILE} "
            f"in {ann}); create them with `<relative video path> <label>` lines, or remove the empty "
            f"{ANNOTATIONS_DIR}/ folder to read the videos as unlabelled"
        )
    return _records_from(videos, set(on_disk), entries, path_of)


def _read_remote_corpus(uri: str, categories: Iterable[str]) -> list[VideoRecord]:
    """:func:`read_corpus` of a corpus on a pyarrow filesystem; errors name the URI, not the local copy."""
    import tempfile

    import pyarrow.fs as pafs

    from dualvad.storage import resolve

    fs, inner = resolve(uri)
    uri, inner = uri.rstrip("/"), inner.rstrip("/")
    annotated = fs.get_file_info(f"{inner}/{ANNOTATIONS_DIR}").type == pafs.FileType.Directory
    # like a local folder: without annotations/, the videos are under videos/ or the folder itself
    has_videos_dir = fs.get_file_info(f"{inner}/{VIDEOS_DIR}").type == pafs.FileType.Directory
    under = VIDEOS_DIR if annotated or has_videos_dir else ""
    videos = f"{inner}/{under}".rstrip("/")
    videos_uri = f"{uri}/{under}".rstrip("/")
    selector = pafs.FileSelector(videos, recursive=True, allow_not_found=True)
    on_disk = sorted(info.path[len(videos) + 1:] for info in fs.get_file_info(selector)
                     if info.type == pafs.FileType.File and has_video_extension(info.base_name))
    if not annotated:
        return _unlabelled(uri, videos_uri, on_disk, lambda vid: f"{videos_uri}/{vid}")
    with tempfile.TemporaryDirectory(prefix="dualvad-corpus-") as local:
        ann = Path(local, ANNOTATIONS_DIR)
        ann.mkdir()
        selector = pafs.FileSelector(f"{inner}/{ANNOTATIONS_DIR}", allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type == pafs.FileType.File:
                with fs.open_input_stream(info.path) as source:
                    (ann / info.base_name).write_bytes(source.read())
        try:
            return _read_layout(uri, ann, videos_uri, on_disk, lambda vid: f"{videos_uri}/{vid}", categories)
        except CorpusFormatError as error:
            raise CorpusFormatError(str(error).replace(local, uri)) from None
