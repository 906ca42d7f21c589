"""``read_corpus``: a corpus folder (or URI) as video records, whichever annotation layout it holds (label
lists, UCF-Crime's files, VERA's ``UCF_Eval.json``; no annotations: unlabelled), each record checked
against the video files present; parsed by :mod:`dualvad.corpus.annotations`."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path

from dualvad.corpus.annotations import (
    Temporal,
    read_label_list,
    read_ucf_temporal,
    read_ucf_train_list,
    read_vera_eval,
)
from dualvad.corpus.layout import (
    ANNOTATIONS_DIR,
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
    has_video_extension,
)

_MAX_LISTED = 5  # videos named in an error before "... and N more"

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


def _records_from(videos: object, on_disk: set[str], entries: list[_Entry], path_of,
                  videos_required: bool = True) -> list[VideoRecord]:
    """Check every listed file is among ``on_disk`` (under ``videos``; unless not ``videos_required``) and
    build the sorted records, each file's path given by ``path_of(relative path)``."""
    missing = sorted(vid for vid, *_ in entries if vid not in on_disk)
    if missing and videos_required:
        raise CorpusFormatError(
            f"{len(missing)} listed videos are missing under {videos}: {_preview(missing)}; "
            "put the files there or remove them from the annotation lists"
        )
    records = [
        VideoRecord(vid, path_of(vid), label, split, intervals, frames)
        for vid, label, split, intervals, frames in entries
    ]
    return sorted(records, key=lambda r: (r.split, r.video_id))


def read_corpus(root: str | os.PathLike[str], categories: Iterable[str] = (),
                videos_required: bool = True) -> list[VideoRecord]:
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
        videos_required: False for a corpus whose features come from files (``ingest.features``): a listed
            video may then be absent (its record's ``path`` is where it would be).

    Raises:
        CorpusFormatError: no annotation files (and no videos), a malformed line, an unknown label, a
            temporal entry for a video that is not listed, or listed videos missing from `videos/`.
    """
    if "://" in str(root):
        return _read_remote_corpus(str(root), categories, videos_required)
    root = Path(root)
    if not root.is_dir():
        raise CorpusFormatError(f"{root}: no such corpus folder; pass a folder with videos/ and "
                                "annotations/, or a folder of videos")
    ann, videos = root / ANNOTATIONS_DIR, root / VIDEOS_DIR
    if not ann.is_dir():
        videos = videos if videos.is_dir() else root
        return _unlabelled(root, videos, _video_files(videos), lambda vid: os.path.abspath(videos / vid))
    return _read_layout(root, ann, videos, _video_files(videos), lambda vid: os.path.abspath(videos / vid),
                        categories, videos_required)


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
                 categories: Iterable[str], videos_required: bool = True) -> list[VideoRecord]:
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
    return _records_from(videos, set(on_disk), entries, path_of, videos_required)


def _read_remote_corpus(uri: str, categories: Iterable[str],
                        videos_required: bool = True) -> list[VideoRecord]:
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
            return _read_layout(uri, ann, videos_uri, on_disk, lambda vid: f"{videos_uri}/{vid}", categories,
                                videos_required)
        except CorpusFormatError as error:
            raise CorpusFormatError(str(error).replace(local, uri)) from None
