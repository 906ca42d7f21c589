"""The scorer ensemble (``scorer.ensemble``): its output, its training loss, saving and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.data import FeatureNormalizer
from dualvad.scorer.ensemble import EnsembleOutput, ScorerEnsemble
from dualvad.scorer.refinevad import RefineVAD
from dualvad.scorer.trained import TrainedScorer, batch_loss, build_model, drop_column_groups, output_loss

B, K, D = 6, 5, 8
CATEGORIES = ("Normal", "Fire", "Fight")
SMALL = {"hidden_dim": 16, "transformer_heads": 2, "shift_fold_div": 4}
GROUPS = torch.tensor([0, 1, 1, 2, 0, 1, 1, 2])  # D columns in 3 cue groups


def _batch() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(1)
    return {"features": torch.from_numpy(rng.normal(size=(B, K, D)).astype(np.float32)),
            "label": torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
            "category": torch.tensor([1, 0, 2, 0, 1, 0]), "known": torch.ones(B, dtype=torch.bool)}


def _ensemble(members: int, **settings: object) -> tuple[ScorerConfig, torch.nn.Module]:
    config = ScorerConfig(**{**SMALL, "ensemble": members, **settings})
    torch.manual_seed(0)
    return config, build_model(config, D, len(CATEGORIES))


def test_the_output_is_the_members_mean_and_their_mean_category_probabilities():
    _, model = _ensemble(3)
    model.eval()
    x = _batch()["features"]
    output = model(x)
    assert isinstance(model, ScorerEnsemble) and isinstance(output, EnsembleOutput)
    members = [member(x) for member in model.members]
    assert torch.allclose(output.segment_scores, sum(m.segment_scores for m in members) / 3)
    probabilities = sum(torch.softmax(m.category_logits, dim=-1) for m in members) / 3
    assert torch.allclose(torch.softmax(output.category_logits, dim=-1), probabilities, atol=1e-6)
    assert output.features.shape == (B, K, 3 * SMALL["hidden_dim"])
    for mine, theirs in zip(output.members, members, strict=True):
        assert torch.equal(mine.segment_scores, theirs.segment_scores)


def test_each_member_takes_its_own_input_from_a_stacked_one():
    _, model = _ensemble(2)
    model.eval()
    x = torch.randn(2, B, K, D)
    output = model(x)
    for m, member in enumerate(model.members):
        assert torch.equal(output.members[m].segment_scores, member(x[m]).segment_scores)
    with pytest.raises(ValueError, match="inputs for 3 members, the ensemble has 2"):
        model(torch.randn(3, B, K, D))
    with pytest.raises(ValueError, match="at least 2 members"):
        ScorerEnsemble(lambda: RefineVAD(ScorerConfig(**SMALL), D, 3), 1)


def test_member_zero_is_the_single_scorer_of_the_same_seed_and_the_others_differ():
    _, ensemble = _ensemble(3)
    _, single = _ensemble(1)
    assert isinstance(single, RefineVAD)
    first, second = ensemble.members[0].state_dict(), ensemble.members[1].state_dict()
    assert all(torch.equal(first[key], value) for key, value in single.state_dict().items())
    assert not all(torch.equal(first[key], second[key]) for key in first)


def test_the_training_loss_is_the_members_mean_each_on_its_own_dropped_groups():
    config, model = _ensemble(3, group_drop=0.5)
    batch = _batch()
    torch.manual_seed(7)
    loss = batch_loss(config, model, dict(batch), GROUPS)
    torch.manual_seed(7)  # the same draws in the same order: one dropped input per member, then the members
    inputs = [drop_column_groups(batch["features"], GROUPS, 0.5) for _ in range(3)]
    assert not torch.equal(inputs[0], inputs[1])  # seed 7 draws different groups for members 0 and 1
    members = zip(model.members, inputs, strict=True)
    expected = [output_loss(config, member(x), batch) for member, x in members]
    assert torch.allclose(loss, torch.stack(expected).mean())


def test_a_single_scorer_s_loss_drops_groups_then_runs_the_model_as_before():
    config, model = _ensemble(1, group_drop=0.5)
    batch = _batch()
    torch.manual_seed(7)
    loss = batch_loss(config, model, dict(batch), GROUPS)
    torch.manual_seed(7)
    dropped = {**batch, "features": drop_column_groups(batch["features"], GROUPS, 0.5)}
    assert torch.equal(loss, output_loss(config, model(dropped["features"]), dropped))


def test_an_ensemble_saves_and_loads_with_the_same_scores(tmp_path):
    config, model = _ensemble(3)
    normalizer = FeatureNormalizer(np.zeros(D, np.float32), np.ones(D, np.float32))
    scorer = TrainedScorer(config, D, CATEGORIES, normalizer, model)
    features = np.random.default_rng(2).normal(size=(4, K, D)).astype(np.float32)
    scores, probabilities = scorer.predict(features)
    scorer.save(tmp_path)
    loaded = TrainedScorer.load(tmp_path)
    assert loaded.config.ensemble == 3 and len(loaded.model.members) == 3
    again, again_probabilities = loaded.predict(features)
    np.testing.assert_array_equal(again, scores)
    np.testing.assert_allclose(again_probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(again_probabilities, probabilities)


def test_a_scorer_saved_before_the_ensemble_key_loads_as_one_scorer(tmp_path):
    config, model = _ensemble(1)
    scorer = TrainedScorer(config, D, CATEGORIES, FeatureNormalizer(np.zeros(D, np.float32),
                                                                   np.ones(D, np.float32)), model)
    scorer.save(tmp_path)
    meta = json.loads((tmp_path / "scorer.json").read_text())
    del meta["config"]["ensemble"]  # as written before the key existed
    (tmp_path / "scorer.json").write_text(json.dumps(meta))
    loaded = TrainedScorer.load(tmp_path)
    assert loaded.config.ensemble == 1 and isinstance(loaded.model, RefineVAD)
    features = np.random.default_rng(3).normal(size=(2, K, D)).astype(np.float32)
    np.testing.assert_array_equal(loaded.score(features), scorer.score(features))
