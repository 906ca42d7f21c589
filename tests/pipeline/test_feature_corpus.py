"""A corpus whose features come from per-video ``.npy`` files (``ingest.features``), on the session's Ray.

The feature files come from the shared scored run's corpus, so they carry its signal:

* ``exact``: each video's K = 8 segment features as T = 8 snippets in the ``single`` layout, the corpus's
  annotations without its videos. Ingest pools 8 snippets into 8 segments (the identity), so train-scorer
  with the scored run's settings must give the scored run's scorer: the scores are compared.
* ``mixed``: the videos present, their features extracted by ``dualvad extract-features``'s function (T =
  ceil(45 / 16) = 3 snippets of the motion cues, two crops: the frame and its mirror), half the videos as
  ``<stem>__<crop>.npy`` files and half as one ``(T, C, D)`` file, test videos kept one segment per
  snippet; four videos with a bad file (wrong shape, a missing crop, a NaN, an empty file). Scored with the
  exact run's scorer, sampled, benchmarks built from the videos (evaluate runs on ``exact``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dualvad import paths
from dualvad import schema as S
from dualvad.cli import main
from dualvad.corpus.feature_files import load_features, save_features, scan_features
from dualvad.corpus.readers import read_corpus
from dualvad.pipeline.build_benchmarks import run_build_benchmarks
from dualvad.pipeline.evaluate import run_evaluate
from dualvad.pipeline.ingest import run_ingest
from dualvad.pipeline.sample import run_sample
from dualvad.pipeline.score import run_score
from dualvad.rundir import open_run
from dualvad.scorer.extract import METADATA_FILE, extract_corpus
from dualvad.scorer.features import CUES
from dualvad.stages.records import read_input
from dualvad.train.train_scorer import run_train_scorer

BAD = {"wrong_shape", "missing_crop", "nan", "empty"}  # what each of four videos' files gets wrong


def segments_of(run: str) -> dict[str, dict]:
    """Video id -> its first segment row plus ``features`` float32 (K, D), ``bounds`` int64 (K, 2) and
    ``crops`` float32 (K, C, D) (``None`` without crop features)."""
    table = read_input(open_run(run), paths.SEGMENTS).sort_by([(S.VIDEO_ID, "ascending"),
                                                               (S.SEGMENT_INDEX, "ascending")])
    videos: dict[str, dict] = {}
    for row in table.to_pylist():
        video = videos.setdefault(row[S.VIDEO_ID], {**row, "features": [], "bounds": [], "crops": []})
        video["features"].append(row[S.FEATURE])
        video["bounds"].append((row[S.START_FRAME], row[S.END_FRAME]))
        video["crops"].append(row[S.CROP_FEATURES])
    return {vid: {**v, "features": np.asarray(v["features"], np.float32), "bounds": np.asarray(v["bounds"]),
                  "crops": None if v["crops"][0] is None else np.asarray(v["crops"], np.float32)}
            for vid, v in videos.items()}


def scores_of(run: str) -> dict[tuple[str, int], float]:
    table = read_input(open_run(run), paths.SCORES)
    columns = (table[c].to_pylist() for c in (S.VIDEO_ID, S.SEGMENT_INDEX, S.SCORE))
    return {(v, i): s for v, i, s in zip(*columns, strict=True)}


def corpus_copy(source: str, target: Path, with_videos: bool) -> str:
    """The corpus's annotations, and a link to its videos when ``with_videos``."""
    shutil.copytree(Path(source, "annotations"), target / "annotations")
    if with_videos:
        (target / "videos").symlink_to(Path(source, "videos"))
    return str(target)


@pytest.fixture(scope="module")
def exact(scored_run, tmp_path_factory):
    """The ``exact`` run (module docstring): (config, scored run's config)."""
    scored, _ = scored_run
    root = tmp_path_factory.mktemp("features-exact")
    for vid, video in segments_of(scored.run).items():
        save_features(str(root / "features"), vid, video["features"][:, None], "single")
    config = dataclasses.replace(
        scored, corpus=corpus_copy(scored.corpus, root / "corpus", with_videos=False), run=str(root / "run"),
        ingest=dataclasses.replace(scored.ingest, features=str(root / "features")),
        scorer=dataclasses.replace(scored.scorer, score_workers=1),  # one scoring actor (training ignores it)
        eval=dataclasses.replace(scored.eval, ablate="scorer"))
    for stage in (run_ingest, run_train_scorer, run_score, run_sample, run_evaluate):
        print(stage(config))
    return config, scored


def test_feature_files_train_the_scorer_ordinary_ingest_trains(exact):
    config, scored = exact
    ours, theirs = scores_of(config.run), scores_of(scored.run)
    assert ours.keys() == theirs.keys()
    difference = max(abs(ours[key] - theirs[key]) for key in ours)
    assert difference == 0.0  # the same features, labels, order and seed: the same weights
    rows = segments_of(config.run)
    video = rows[sorted(rows)[0]]
    assert video[S.NUM_FRAMES] == 16 * 8  # no video, no annotated length: 16 T
    assert video["bounds"].tolist() == [[16 * i, 16 * i + 16] for i in range(8)]
    assert video[S.SNIPPETS] == 8 and video[S.CROP_FEATURES] is None


def test_evaluate_gives_the_scorer_row_and_the_16_frame_ground_truth_without_videos(exact):
    config, _ = exact
    metrics = json.loads(Path(config.run, paths.EVAL, paths.METRICS_FILE).read_text())
    assert sorted(metrics["metrics"]) == ["scorer", "verdict"]  # no VLM row: eval.ablate=scorer
    assert metrics["metrics"]["scorer"]["video_auc"] == metrics["metrics"]["verdict"]["video_auc"]
    assert metrics["metrics"]["scorer"]["frame_auc_16"] is not None
    listing = json.loads(Path(config.run, paths.EVAL, paths.SNIPPET_GT_VIDEOS_FILE).read_text())["videos"]
    truth = np.load(Path(config.run, paths.EVAL, paths.SNIPPET_GT_FILE))
    assert [(v["snippets"], v["frames"]) for v in listing] == [(8, 128)] * 10  # the files' T = 8, 16 T frames
    assert len(truth) == 128 * 10 and [v["offset"] for v in listing] == [128 * i for i in range(10)]


@pytest.fixture(scope="module")
def mixed(exact, tmp_path_factory):
    """The ``mixed`` run (module docstring): (config, {video id: (T, C, D) features written}, {kind of bad
    file: its video id})."""
    config, scored = exact
    root = tmp_path_factory.mktemp("features-mixed")
    folder = root / "features"
    code = main(["extract-features", "--corpus", scored.corpus, "--out", str(folder)])  # layout auto: crops
    assert code == 0 and len(list(folder.rglob("*.npy"))) == 40  # 20 videos x 2 crops
    videos = sorted(segments_of(scored.run))
    written = {}
    for index, vid in enumerate(videos):
        (found,) = scan_features(str(folder), [vid])
        written[vid] = load_features(str(folder), found)
        if index % 2 == 0:  # every other video as one (T, C, D) file
            for rel in found.files:
                (folder / rel).unlink()
            save_features(str(folder), vid, written[vid], "stacked")
    bad = videos[:4]
    names = dict(zip(sorted(BAD), bad, strict=True))
    stem = {kind: Path(vid).stem for kind, vid in names.items()}
    for kind, vid in names.items():  # start from the crops layout, then spoil one thing
        for old in folder.glob(f"{Path(vid).parent}/{stem[kind]}*.npy"):
            old.unlink()
        save_features(str(folder), vid, written[vid], "crops")
    sub = folder / Path(names["wrong_shape"]).parent
    np.save(sub / f"{stem['wrong_shape']}__1.npy", written[names["wrong_shape"]][:, 1, :5])
    (folder / Path(names["missing_crop"]).parent / f"{stem['missing_crop']}__1.npy").unlink()
    spoilt = written[names["nan"]][:, 0].copy()
    spoilt[1, 2] = np.nan
    np.save(folder / Path(names["nan"]).parent / f"{stem['nan']}__0.npy", spoilt)
    (folder / Path(names["empty"]).parent / f"{stem['empty']}__0.npy").write_bytes(b"")
    config = dataclasses.replace(
        config, corpus=corpus_copy(scored.corpus, root / "corpus", with_videos=True), run=str(root / "run"),
        ingest=dataclasses.replace(config.ingest, features=str(folder), features_snippets="keep_test"),
        score=dataclasses.replace(config.score, scorer_run=config.run),
        sample=dataclasses.replace(config.sample, budget=6),
        benchmarks=dataclasses.replace(config.benchmarks, clip_frames=3, image_size=56, shards=1))
    for stage in (run_ingest, run_score, run_sample, run_build_benchmarks):  # evaluate: on ``exact``
        print(stage(config))
    return config, written, names


def test_every_bad_file_is_one_recorded_failure_naming_it(mixed):
    config, _, names = mixed
    failures = pq.read_table(Path(config.run, paths.SEGMENTS, paths.FAILURES_FILE)).to_pylist()
    reasons = {row[S.VIDEO_ID]: row[S.REASON] for row in failures}
    assert sorted(reasons) == sorted(names.values())
    stem = {kind: Path(vid).stem for kind, vid in names.items()}
    assert f"{stem['wrong_shape']}__1.npy (" in reasons[names["wrong_shape"]]  # its crops differ in D
    assert f"missing crop file(s) {Path(names['missing_crop']).parent}/{stem['missing_crop']}__1.npy" in \
        reasons[names["missing_crop"]]
    assert f"{stem['nan']}__0.npy: 1 values are NaN or infinite" in reasons[names["nan"]]
    assert f"{stem['empty']}__0.npy: not a .npy array file" in reasons[names["empty"]]


def test_crops_and_snippets_reach_the_segments(mixed):
    config, written, names = mixed
    rows = segments_of(config.run)
    assert not set(names.values()) & set(rows)
    for vid, video in rows.items():
        crops = video["crops"]  # (K, C, D)
        np.testing.assert_allclose(video["features"], crops.mean(axis=1), rtol=1e-6)
        assert video[S.NUM_FRAMES] == 45 and video["bounds"][-1, 1] == 45  # from the video's container
        if video[S.SPLIT] == "test":  # one segment per snippet
            np.testing.assert_array_equal(crops, written[vid])
            assert video["bounds"].tolist() == [[0, 16], [16, 32], [32, 45]]
        else:  # 3 snippets into 8 segments of the 45 frames, each the snippet of its first frame
            assert video["bounds"][:, 0].tolist() == [0, 5, 11, 16, 22, 28, 33, 39]
            np.testing.assert_array_equal(crops, written[vid][[0, 0, 0, 1, 1, 1, 2, 2]])


def test_extract_features_records_how_they_were_made(mixed):
    config, written, _ = mixed
    metadata = json.loads(Path(config.ingest.features, METADATA_FILE).read_text())
    assert metadata["snippet_frames"] == 16 and metadata["resolution"] == [64, 48]
    assert metadata["dim"] == 2 * len(CUES)  # the motion extractor's rise and drop of each cue
    assert [crop["geometry"] for crop in metadata["crops"]] == ["the whole frame resized to 64x48 px",
                                                               "crop 0 mirrored left to right"]
    assert set(metadata["videos"].values()) == {3}  # 45 frames: ceil(45 / 16) snippets
    assert any(not np.array_equal(f[:, 0], f[:, 1]) for f in written.values())  # a mirror is another crop


def test_a_single_crop_is_the_first_of_two(mixed, tmp_path):
    config, written, _ = mixed
    scored_corpus = Path(config.corpus, "videos").resolve().parent
    records = [r for r in read_corpus(scored_corpus) if r.video_id in sorted(written)[-2:]]
    summary = extract_corpus(records, str(tmp_path), config.ingest, "single")
    assert (summary.written, summary.files, summary.failures) == (2, 2, [])
    for found in scan_features(str(tmp_path), [r.video_id for r in records]):
        assert found.layout == "single" and found.files == (f"{found.video_id[:-4]}.npy",)
        np.testing.assert_array_equal(load_features(str(tmp_path), found), written[found.video_id][:, :1])


def test_the_pipeline_goes_on_to_the_benchmarks(mixed):
    config, _, names = mixed
    manifest = json.loads(Path(config.run, paths.BENCHMARKS, "manifest.json").read_text())
    assert manifest["image"]["rows"] == 6 * (20 - len(names))  # budget 6, every ingested video
    scores = read_input(open_run(config.run), paths.SCORES)
    assert scores.num_rows == sum(len(v["bounds"]) for v in segments_of(config.run).values())  # K 3 and 8
