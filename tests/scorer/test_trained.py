"""Scorer checkpoints: saved with their whole scorer config and rebuilt from it, never from defaults."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.data import FeatureNormalizer
from dualvad.scorer.refinevad import RefineVAD
from dualvad.scorer.trained import StaleScorerError, TrainedScorer, build_model, drop_column_groups

D, K = 6, 5
CATEGORIES = ("Normal", "Fire", "Fight")
# every model field away from its default, and loss/training fields too
TRAINED_WITH = ScorerConfig(hidden_dim=32, transformer_heads=2, transformer_layers=2, shift_fold_div=4,
                            use_core=False, dropout=0.2, context_scale_init=0.7, context_drop=0.3,
                            centre_context=False, topk=5, epochs=7, seed=3, ensemble=1)


def saved_scorer(directory, config: ScorerConfig = TRAINED_WITH) -> tuple[TrainedScorer, np.ndarray]:
    """A scorer saved to ``directory`` and its scores (float32 (4, K)) on fixed features."""
    torch.manual_seed(0)
    normalizer = FeatureNormalizer(np.full(D, 0.5, np.float32), np.full(D, 2.0, np.float32))
    scorer = TrainedScorer(config, D, CATEGORIES, normalizer, build_model(config, D, len(CATEGORIES)),
                           {"epoch": 6.0})
    scorer.save(directory)
    features = np.random.default_rng(0).normal(size=(4, K, D)).astype(np.float32)
    return scorer, scorer.score(features)


def changed_defaults(monkeypatch, **defaults: object) -> None:
    """Make ``ScorerConfig()`` default to ``defaults`` from now on (as a later dualvad might): a value not
    passed takes the new default (a pydantic dataclass keeps its defaults in its schema, not in
    ``__init__.__defaults__``, so the constructor is wrapped)."""
    build = ScorerConfig.__init__

    def later(self: ScorerConfig, **values: object) -> None:
        build(self, **{**defaults, **values})

    monkeypatch.setattr(ScorerConfig, "__init__", later)


def test_a_checkpoint_stores_the_whole_config_and_the_data_shape(tmp_path):
    saved_scorer(tmp_path)
    meta = json.loads((tmp_path / "scorer.json").read_text())
    assert meta["config"] == dataclasses.asdict(TRAINED_WITH)
    assert (meta["architecture"], meta["feature_dim"], meta["categories"]) == (2, D, list(CATEGORIES))


def test_a_loaded_scorer_keeps_its_saved_config_after_the_defaults_change(tmp_path, monkeypatch):
    _, scores = saved_scorer(tmp_path)
    changed_defaults(monkeypatch, hidden_dim=64, transformer_heads=8, transformer_layers=1, shift_fold_div=8,
                     use_core=True, context_drop=0.0, centre_context=True, topk=2, ensemble=3)
    assert ScorerConfig().hidden_dim == 64  # the patch took effect
    loaded = TrainedScorer.load(tmp_path)
    assert loaded.config == TRAINED_WITH
    assert (loaded.feature_dim, loaded.categories) == (D, CATEGORIES)
    assert isinstance(loaded.model, RefineVAD) and loaded.model.core is None
    assert len(loaded.model.motar.encoder.layers) == 2
    assert loaded.model.motar.fold_div == 4
    features = np.random.default_rng(0).normal(size=(4, K, D)).astype(np.float32)
    np.testing.assert_array_equal(loaded.score(features), scores)


def test_a_stored_config_missing_a_field_is_refused_not_filled_from_defaults(tmp_path):
    saved_scorer(tmp_path)
    meta = json.loads((tmp_path / "scorer.json").read_text())
    del meta["config"]["transformer_layers"]
    (tmp_path / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(StaleScorerError, match=r"lacks \['transformer_layers'\] and has unknown \[\]"):
        TrainedScorer.load(tmp_path)


def test_a_checkpoint_without_a_config_is_refused(tmp_path):
    saved_scorer(tmp_path)
    meta = json.loads((tmp_path / "scorer.json").read_text())
    # the format before checkpoints stored their config: a partial copy of the model options
    meta["spec"] = {"kind": "refinevad", "feature_dim": D, "categories": list(CATEGORIES), "architecture": 2}
    del meta["config"]
    (tmp_path / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(StaleScorerError,
                       match="saved without its scorer config.*re-run `dualvad train-scorer`"):
        TrainedScorer.load(tmp_path)


def test_an_old_architecture_is_refused_for_refinevad_but_not_for_the_mil_baseline(tmp_path):
    for kind in ("refinevad", "mil"):
        saved_scorer(tmp_path / kind, dataclasses.replace(TRAINED_WITH, kind=kind))
        meta = json.loads((tmp_path / kind / "scorer.json").read_text())
        del meta["architecture"]  # as written before the field existed: architecture 1
        (tmp_path / kind / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(StaleScorerError, match="architecture 1, this dualvad runs 2"):
        TrainedScorer.load(tmp_path / "refinevad")
    assert TrainedScorer.load(tmp_path / "mil").config.kind == "mil"


def test_a_run_s_scorer_loads_in_place_on_a_local_disk_and_through_a_copy_elsewhere(tmp_path):
    """``load_from_run`` through :func:`dualvad.rundir.local_folder`: a local run's folder is read where it
    is; any other filesystem (here a SubTreeFileSystem, as an object store would be) is copied first."""
    import pyarrow.fs as pafs

    from dualvad import paths
    from dualvad.rundir import RunDir, local_folder, open_run
    from dualvad.scorer.trained import load_from_run

    run = open_run(str(tmp_path / "run"))
    _, scores = saved_scorer(tmp_path / "run" / paths.SCORER / paths.SCORER_MODEL_DIR)
    features = np.random.default_rng(0).normal(size=(4, K, D)).astype(np.float32)
    empty = tmp_path / "unused"
    empty.mkdir()
    assert local_folder(run.fs, run.path(paths.SCORER), str(empty)) == run.path(paths.SCORER)
    assert np.array_equal(load_from_run(run, str(empty)).score(features), scores)
    assert not list(empty.iterdir())

    remote = RunDir(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "run", "sub://run")
    copy = tmp_path / "copy"
    copy.mkdir()
    assert np.array_equal(load_from_run(remote, str(copy)).score(features), scores)
    assert (copy / "scorer.json").is_file()


def test_group_drop_zeroes_whole_groups_per_video_and_keeps_the_rest():
    groups = torch.tensor([0, 1, 1, 2, 0, 1, 1, 2])  # 8 columns in 3 groups, as video_context's rise + drop
    features = torch.arange(1, 3 * 4 * 8 + 1, dtype=torch.float32).reshape(3, 4, 8)  # (B=3, K=4, D=8), no 0
    torch.manual_seed(0)
    dropped = drop_column_groups(features, groups, 0.5)
    kept = dropped != 0
    assert torch.equal(dropped[kept], features[kept])  # what is kept is unchanged
    for video in range(3):
        assert torch.equal(kept[video], kept[video, :1].expand(4, 8))  # the same for every segment
        for group in range(3):  # a group's columns go together
            assert kept[video, 0, groups == group].unique().numel() == 1
    assert 0 < int(kept.sum()) < kept.numel()  # seed 0 drops some and keeps some
    assert drop_column_groups(features, groups, 0.0) is features
