"""RefineVAD modules and the MIL baseline: shapes, gradients, the exact channel shift, masks,
and a tiny weakly supervised training run."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from dualvad.scorer.config import ScorerConfig
from dualvad.scorer.losses import topk_mil_loss
from dualvad.scorer.mil import MILRankingScorer
from dualvad.scorer.refinevad import (
    CORE,
    MoTAR,
    MotionSalience,
    RefineVAD,
    ScorerOutput,
    centre_context,
    drop_context,
    sinusoidal_positions,
    temporal_channel_shift,
)

B, K, D, H, C = 3, 8, 20, 32, 6


def small_config(**overrides: object) -> ScorerConfig:
    # no context dropout: a dropped branch would get no gradient in the gradient checks
    settings: dict = dict(hidden_dim=H, transformer_heads=4, context_drop=0.0)
    settings.update(overrides)
    return ScorerConfig(**settings)


def assert_all_grads(module: nn.Module) -> None:
    for name, param in module.named_parameters():
        assert param.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(param.grad).all(), f"non-finite gradient in {name}"
        assert param.grad.abs().sum() > 0, f"zero gradient in {name}"


def random_readout(*tensors: Tensor) -> Tensor:
    """A scalar touching every element with random weights (no symmetric cancellation)."""
    gen = torch.Generator().manual_seed(1)
    return sum((t * torch.randn(t.shape, generator=gen)).sum() for t in tensors)


def reference_shift(x: Tensor, n: int, fold: int) -> Tensor:
    """Hard TSM shift built by hand: channels [0, n) take t-1, [fold, fold+n) take t+1."""
    out = x.clone()
    out[:, 1:, :n] = x[:, :-1, :n]
    out[:, 0, :n] = 0
    out[:, :-1, fold : fold + n] = x[:, 1:, fold : fold + n]
    out[:, -1, fold : fold + n] = 0
    return out


# --- MotionSalience ---------------------------------------------------------------------------


def test_motion_salience_shapes_values_and_grads() -> None:
    torch.manual_seed(0)
    module = MotionSalience()
    x = torch.randn(B, K, H, requires_grad=True)
    ratio, intensity = module(x)
    assert ratio.shape == (B,) and intensity.shape == (B, K)
    assert ((ratio >= 0) & (ratio <= 1)).all()
    expected = (x[:, 1:] - x[:, :-1]).var(dim=-1, correction=0)
    assert torch.equal(intensity[:, 0], torch.zeros(B))
    torch.testing.assert_close(intensity[:, 1:], expected)
    random_readout(ratio).backward()
    assert_all_grads(module)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_motion_salience_ignores_padding() -> None:
    torch.manual_seed(0)
    module = MotionSalience()
    x = torch.randn(1, K, H)
    mask = torch.ones(1, K, dtype=torch.bool)
    mask[:, 5:] = False
    padded = x.clone()
    padded[:, 5:] = 100.0  # junk in padding must not change anything
    ratio_short, intensity_short = module(x[:, :5])
    ratio_pad, intensity_pad = module(padded, mask)
    torch.testing.assert_close(ratio_pad, ratio_short)
    torch.testing.assert_close(intensity_pad[:, :5], intensity_short)
    assert torch.equal(intensity_pad[:, 5:], torch.zeros(1, K - 5))


# --- temporal_channel_shift -------------------------------------------------------------------


def test_shift_moves_exactly_the_share_the_ratio_says() -> None:
    # ratio 0.5, C = 64, fold_div = 8: fold = 8, so 4 channels forward, 4 backward, 56 untouched
    torch.manual_seed(0)
    x = torch.randn(2, 6, 64)
    out = temporal_channel_shift(x, torch.tensor([0.5, 0.5]), fold_div=8)
    assert torch.equal(out, reference_shift(x, n=4, fold=8))
    changed = (out != x).any(dim=1).any(dim=0)
    assert changed.sum() == 8
    assert changed[:4].all() and changed[8:12].all()
    assert torch.equal(out[..., 4:8], x[..., 4:8]) and torch.equal(out[..., 12:], x[..., 12:])


@pytest.mark.parametrize(("ratio", "n"), [(0.0, 0), (0.25, 2), (0.5, 4), (0.875, 7), (1.0, 8)])
def test_shift_hard_ratios(ratio: float, n: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 5, 64)
    out = temporal_channel_shift(x, torch.tensor([ratio]), fold_div=8)
    assert torch.equal(out, reference_shift(x, n=n, fold=8))


def test_shift_ratio_is_per_video() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 32)  # fold = 4
    out = temporal_channel_shift(x, torch.tensor([1.0, 0.25]), fold_div=8)
    assert torch.equal(out[:1], reference_shift(x[:1], n=4, fold=4))
    assert torch.equal(out[1:], reference_shift(x[1:], n=1, fold=4))


def test_shift_fractional_ratio_interpolates_and_has_ratio_gradient() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 5, 64)
    ratio = torch.tensor([0.3], requires_grad=True)  # 0.3 * 8 = 2.4 channels each way
    out = temporal_channel_shift(x, ratio, fold_div=8)
    expected = 0.6 * reference_shift(x, 2, 8) + 0.4 * reference_shift(x, 3, 8)
    torch.testing.assert_close(out, expected)
    random_readout(out).backward()
    assert ratio.grad is not None and torch.isfinite(ratio.grad).all() and ratio.grad != 0


def test_shift_zero_pads_at_masked_segments() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[True, True, True, True, False, False]])
    out = temporal_channel_shift(x, torch.tensor([1.0]), fold_div=8, mask=mask)
    short = temporal_channel_shift(x[:, :4], torch.tensor([1.0]), fold_div=8)
    assert torch.equal(out[:, :4], short)


def test_shift_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="ratio must be"):
        temporal_channel_shift(torch.zeros(2, 4, 16), torch.zeros(3), fold_div=8)
    with pytest.raises(ValueError, match="fold_div"):
        temporal_channel_shift(torch.zeros(2, 4, 16), torch.zeros(2), fold_div=1)


# --- MoTAR and CORE ---------------------------------------------------------------------------


def test_motar_shapes_and_grads() -> None:
    torch.manual_seed(0)
    config = small_config()
    module = MoTAR(config, nn.Linear(D, H))
    features, ratio = module(torch.randn(B, K, D))
    assert features.shape == (B, K, H) and ratio.shape == (B,)
    random_readout(features).backward()
    assert_all_grads(module)


def test_sinusoidal_positions_exact() -> None:
    codes = sinusoidal_positions(3, 5)
    assert codes.shape == (3, 5) and codes.dtype == torch.float32
    expected = torch.tensor([
        [0.0, 1.0, 0.0, 1.0, 0.0],
        [math.sin(1), math.cos(1), math.sin(10000 ** -0.4), math.cos(10000 ** -0.4), math.sin(10000 ** -0.8)],
        [math.sin(2), math.cos(2), math.sin(2 * 10000 ** -0.4), math.cos(2 * 10000 ** -0.4),
         math.sin(2 * 10000 ** -0.8)],
    ])
    torch.testing.assert_close(codes, expected, rtol=0, atol=1e-7)


class _PositionsSeen(nn.Module):
    """Stands in for the encoder: records its input, returns it plus a fixed update."""

    def __init__(self, update: float) -> None:
        super().__init__()
        self.update, self.seen = update, None

    def forward(self, z: Tensor, src_key_padding_mask: Tensor | None = None) -> Tensor:
        self.seen = z.detach().clone()
        return z + self.update


def test_motar_adds_positions_for_the_encoder_and_keeps_only_its_update() -> None:
    torch.manual_seed(0)
    module = MoTAR(small_config(centre_context=False, context_scale_init=0.5), nn.Linear(D, H)).eval()
    module.encoder = _PositionsSeen(update=2.0)
    x = torch.randn(B, K, D)
    features, ratio = module(x)
    h = module.proj(x)
    shifted = temporal_channel_shift(h, ratio, module.fold_div)
    # the encoder saw the shifted features plus the positions ...
    torch.testing.assert_close(module.encoder.seen, shifted + sinusoidal_positions(K, H))
    # ... but only what it added (2.0, gated by 0.5) reaches the output, not its input
    torch.testing.assert_close(features, h + 1.0)


def test_core_shapes_and_grads() -> None:
    torch.manual_seed(0)
    module = CORE(small_config(), 5)
    h = torch.randn(B, K, H, requires_grad=True)
    features, logits = module(h)
    assert features.shape == (B, K, H) and logits.shape == (B, 5)
    random_readout(features, logits).backward()
    assert_all_grads(module)


def test_drop_context_zeroes_whole_videos_in_training_only() -> None:
    torch.manual_seed(0)
    context = torch.ones(64, 4, 8)
    assert drop_context(context, 0.5, training=False) is context
    dropped = drop_context(context, 0.5, training=True)
    per_video = dropped.flatten(1)
    # each video is either all zeros or all 1 / (1 - p)
    assert ((per_video == 0).all(dim=1) | (per_video == 2.0).all(dim=1)).all()
    assert 0 < (per_video == 0).all(dim=1).sum() < 64


def test_centre_context_subtracts_the_mean_over_real_segments() -> None:
    context = torch.tensor([[[1.0], [2.0], [6.0]], [[4.0], [8.0], [100.0]]])
    expected = torch.tensor([[[-2.0], [-1.0], [3.0]], [[-2.0], [2.0], [94.0]]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert torch.equal(centre_context(context, mask), expected)
    assert torch.equal(centre_context(context[:1]), expected[:1])


def test_centred_core_adds_nothing_to_a_video_of_identical_segments() -> None:
    # identical segments attend identically: their context is one shift shared by the whole
    # video, which centring removes (uncentred, it moves every segment's features)
    torch.manual_seed(0)
    h = torch.randn(2, 1, H).expand(2, K, H)
    for centre, changed in ((True, False), (False, True)):
        module = CORE(small_config(context_scale_init=1.0, centre_context=centre), 5).eval()
        features, _ = module(h)
        plain = module.norm(h)
        assert (not torch.allclose(features, plain, atol=1e-5)) == changed


# --- RefineVAD --------------------------------------------------------------------------------


@pytest.mark.parametrize(("use_motar", "use_core"), list(itertools.product([True, False], [True, False])))
def test_refinevad_switches_shapes_and_grads(use_motar: bool, use_core: bool) -> None:
    torch.manual_seed(0)
    model = RefineVAD(small_config(use_motar=use_motar, use_core=use_core), D, C)
    assert (model.motar is not None) == use_motar and (model.core is not None) == use_core
    out = model(torch.randn(B, K, D))
    assert isinstance(out, ScorerOutput)
    assert out.segment_scores.shape == (B, K)
    assert out.category_logits is not None and out.category_logits.shape == (B, 6)
    assert out.features.shape == (B, K, H)
    assert ((out.segment_scores >= 0) & (out.segment_scores <= 1)).all()
    random_readout(out.segment_scores, out.category_logits).backward()
    assert_all_grads(model)


@pytest.mark.parametrize(("use_motar", "use_core"), list(itertools.product([True, False], [True, False])))
def test_refinevad_padding_matches_shorter_video(use_motar: bool, use_core: bool) -> None:
    torch.manual_seed(0)
    model = RefineVAD(small_config(use_motar=use_motar, use_core=use_core), D, C).eval()
    x = torch.randn(2, K, D)
    mask = torch.ones(2, K, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        out = model(x, mask)
        short = model(x[1:, :5])
    assert torch.equal(out.segment_scores[1, 5:], torch.zeros(K - 5))
    torch.testing.assert_close(out.segment_scores[1, :5], short.segment_scores[0])
    torch.testing.assert_close(out.category_logits[1], short.category_logits[0])


def test_refinevad_rejects_bad_inputs() -> None:
    model = RefineVAD(small_config(), D, C)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.zeros(B, K, D + 1))
    with pytest.raises(ValueError, match="at least one real segment"):
        model(torch.zeros(1, K, D), torch.zeros(1, K, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_categories"):
        RefineVAD(small_config(), D, 1)


# --- MIL baseline -----------------------------------------------------------------------------


def test_mil_scorer_shapes_and_grads() -> None:
    torch.manual_seed(0)
    model = MILRankingScorer(D)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, -2:] = False
    out = model(torch.randn(B, K, D), mask)
    assert out.segment_scores.shape == (B, K) and out.category_logits is None
    assert out.features.shape == (B, K, 32)
    assert ((out.segment_scores >= 0) & (out.segment_scores <= 1)).all()
    assert torch.equal(out.segment_scores[0, -2:], torch.zeros(2))
    random_readout(out.segment_scores).backward()
    assert_all_grads(model)


# --- training sanity --------------------------------------------------------------------------

ANOMALY_LENGTH = 4  # segments
ANOMALY_DIMS = slice(0, 4)


def synthetic_batch(gen: torch.Generator, videos: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """Half normal, half anomalous videos of 32 segments of 16 dims; anomalous ones get +3 in 4
    dims on 4 consecutive segments at a random place (a fixed place would let the position
    codes of MoTAR learn where, not what).

    Returns: x (B, 32, 16), labels (B,), anomalous (B, 32) bool, True on the shifted segments.
    """
    x = torch.randn(videos, 32, 16, generator=gen)
    labels = torch.zeros(videos)
    labels[videos // 2 :] = 1.0
    anomalous = torch.zeros(videos, 32, dtype=torch.bool)
    starts = torch.randint(0, 32 - ANOMALY_LENGTH + 1, (videos - videos // 2,), generator=gen)
    for video, start in zip(range(videos // 2, videos), starts.tolist(), strict=True):
        anomalous[video, start : start + ANOMALY_LENGTH] = True
    x[..., ANOMALY_DIMS] += 3.0 * anomalous.unsqueeze(-1)
    return x, labels, anomalous


def train_and_measure(seed: int, steps: int = 150, **overrides: object) -> tuple[float, float]:
    """Train on synthetic batches with top-k MIL; return the mean held-out score of the
    anomalous segments and of the other segments of the anomalous videos.

    Runs on one thread: reproducible (reduction order fixed) and not slowed down by thread
    oversubscription when other processes share the cores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_and_measure(seed, steps, **overrides)
    finally:
        torch.set_num_threads(threads)


def _train_and_measure(seed: int, steps: int, **overrides: object) -> tuple[float, float]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    settings: dict = dict(hidden_dim=32, transformer_heads=2)
    settings.update(overrides)
    model = RefineVAD(ScorerConfig(**settings), 16, C)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        x, labels, _ = synthetic_batch(gen)
        loss = topk_mil_loss(model(x).segment_scores, labels, k=3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, labels, anomalous = synthetic_batch(gen, videos=32)  # fresh, held-out videos
    with torch.no_grad():
        scores = model(x).segment_scores[labels == 1]
    anomalous = anomalous[labels == 1]
    return float(scores[anomalous].mean()), float(scores[~anomalous].mean())


def test_training_separates_anomalous_segments() -> None:
    # Not every seed localises: weak labels leave a video-level shortcut open. With this exact
    # setup and the default config, 14 of seeds 0-15 pass (seeds 0 and 10 fail; numbers in the
    # docs/decisions.md), so this is a sanity check of one typical seed, not a proof.
    inside, outside = train_and_measure(seed=1)
    assert inside > outside + 0.3, (inside, outside)
