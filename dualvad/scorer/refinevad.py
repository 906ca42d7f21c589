"""RefineVAD segment scorer (pure PyTorch): MoTAR + CORE over K segment features per video.

After Lee et al., "RefineVAD: Semantic-Guided Feature Recalibration for Weakly Supervised Video
Anomaly Detection" (arXiv 2511.13204). Two modules refine per-segment features before a
per-segment anomaly head:

* MoTAR (Motion-aware Temporal Attention and Recalibration): a motion-salience estimate sets,
  per video, how many channels a TSM-style temporal shift moves; a Transformer encoder then
  models the whole video.
* CORE (Category-Oriented Refinement): learnable category prototypes; segments cross-attend to
  the prototypes weighted by the video's soft category distribution.

Shapes used throughout: ``B`` videos, ``K`` segments per video, ``D`` input feature dim,
``H`` hidden dim, ``C`` categories (index 0 = Normal). Features are float32.

Masks: ``mask`` is a (B, K) bool tensor, ``True`` marks a real segment and ``False`` a padded
one (the Hugging Face ``attention_mask`` convention, the inverse of PyTorch's
``key_padding_mask``). ``None`` means every segment is real. Every video needs at least one
real segment. Padded segments are zeroed before the temporal shift (so they act like the zero
padding at the sequence ends), ignored by attention and pooling, and get score 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualvad.scorer.config import ScorerConfig

__all__ = [
    "CORE",
    "MoTAR",
    "MotionSalience",
    "RefineVAD",
    "ScorerOutput",
    "centre_context",
    "masked_max",
    "resolve_mask",
    "shift_channel_weights",
    "sinusoidal_positions",
    "temporal_channel_shift",
]


@dataclass
class ScorerOutput:
    """What a segment scorer returns.

    Attributes:
        segment_scores: (B, K) float, anomaly probability per segment in [0, 1]; 0 on padding.
        category_logits: (B, C) float, unnormalised video-level category scores, or None for
            scorers without a category head (the MIL baseline).
        features: (B, K, H) float, the refined segment features the scores come from.
    """

    segment_scores: Tensor
    category_logits: Tensor | None
    features: Tensor


def resolve_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Return a (B, K) bool mask for ``x`` (B, K, ...), all True when ``mask`` is None."""
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}, expected (B, K) = {tuple(x.shape[:2])}"
        )
    mask = mask.to(dtype=torch.bool, device=x.device)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every video needs at least one real segment (a mask row is all False)")
    return mask


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max of ``x`` (B, K, H) over the real segments of ``mask`` (B, K) -> (B, H)."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


def drop_context(context: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth per video: zero a whole (B, K, H) context branch with probability p."""
    if not training or p == 0.0:
        return context
    keep = torch.rand(context.shape[0], 1, 1, device=context.device) >= p
    return context * keep.to(context.dtype) / (1.0 - p)


def centre_context(context: Tensor, mask: Tensor | None = None) -> Tensor:
    """(B, K, H) context minus its mean over each video's real segments (``mask`` (B, K) bool,
    or None for all real): what a context branch adds can move evidence between a video's
    segments, but cannot raise or lower all of them at once."""
    if mask is None:
        return context - context.mean(dim=1, keepdim=True)
    weights = mask.unsqueeze(-1).to(context.dtype)
    mean = (context * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
    return context - mean


class MotionSalience(nn.Module):
    """Motion intensity per segment and a per-video temporal shift ratio.

    ``d_t = x_t - x_{t-1}`` (``d_0 = 0``, and 0 wherever ``t`` or ``t-1`` is padding);
    ``intensity_t = Var_c(d_t)``, the variance over channels (population variance, in squared
    feature units). The video-level statistics (mean, max, std over the segments that have a
    predecessor) of ``log1p(intensity)`` -- log so the MLP sees a similar range whatever the
    feature scale -- go through a small MLP and a sigmoid to a shift ratio in [0, 1].
    """

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args: x (B, K, C) float; mask (B, K) bool or None.

        Returns: ``(ratio, intensity)``: ratio (B,) in [0, 1]; intensity (B, K) >= 0.
        """
        mask = resolve_mask(x, mask)
        diff = F.pad(x[:, 1:] - x[:, :-1], (0, 0, 1, 0))  # d_0 = 0
        # a difference against padding is not motion
        moving = F.pad(mask[:, 1:] & mask[:, :-1], (1, 0), value=False)
        diff = diff * moving.unsqueeze(-1).to(x.dtype)
        intensity = diff.var(dim=-1, correction=0)
        stats = self._video_stats(torch.log1p(intensity), moving)
        ratio = torch.sigmoid(self.mlp(stats)).squeeze(-1)
        return ratio, intensity

    @staticmethod
    def _video_stats(values: Tensor, mask: Tensor) -> Tensor:
        """(mean, max, std) of ``values`` (B, K) over ``mask`` -> (B, 3); zeros if none."""
        weights = mask.to(values.dtype)
        count = weights.sum(dim=1).clamp_min(1.0)
        mean = (values * weights).sum(dim=1) / count
        # values >= 0, so 0 is a safe fill for max and for videos with a single segment
        peak = (values * weights).amax(dim=1)
        var = (((values - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / count
        std = torch.sqrt(var + 1e-8)
        return torch.stack([mean, peak, std], dim=1)


def shift_channel_weights(ratio: Tensor, channels: int, fold_div: int) -> Tensor:
    """Per-channel shift weights of :func:`temporal_channel_shift`.

    Args: ratio (B,) float in [0, 1]; channels C; fold_div the TSM folding factor.

    Returns: (fwd, bwd), each (B, C) float in [0, 1]: how much of each channel is replaced by
    its forward (resp. backward) shifted version.
    """
    fold = channels // fold_div
    index = torch.arange(fold, device=ratio.device, dtype=ratio.dtype)
    # channel c of a group is fully shifted when c + 1 <= ratio * fold, untouched when
    # c >= ratio * fold, and linearly in between: exact for integer ratio * fold, continuous
    # (and differentiable) in the ratio everywhere.
    group = (ratio.unsqueeze(-1) * fold - index).clamp(0.0, 1.0)  # (B, fold)
    fwd = F.pad(group, (0, channels - fold))
    bwd = F.pad(group, (fold, channels - 2 * fold))
    return fwd, bwd


def temporal_channel_shift(
    x: Tensor, ratio: Tensor, fold_div: int, mask: Tensor | None = None
) -> Tensor:
    """TSM-style temporal shift of a per-video share of channels.

    With ``fold = C // fold_div`` and ``s = ratio * fold`` (a real number in [0, fold]):

    * channels ``[0, fold)`` shift forward in time (position t takes t-1; t = 0 gets 0),
    * channels ``[fold, 2*fold)`` shift backward (t takes t+1; t = K-1 gets 0),
    * all other channels are unchanged.

    Within each group, channel ``c`` is mixed as ``out = lerp(x, shifted, w_c)`` with
    ``w_c = clamp(s - c, 0, 1)``. So when ``s`` is an integer n (e.g. ratio 0.5, C = 64,
    fold_div = 8 -> n = 4) exactly n channels move each way, fully, and the rest are untouched
    bit for bit; for a fractional ``s`` the output is the linear interpolation between the
    floor(s)- and ceil(s)-channel shifts (one channel per group partly shifted). This keeps
    the result differentiable w.r.t. ``ratio`` (gradient through the partly shifted channel)
    without a straight-through estimator; it is not a hard shift at fractional ratios.

    Args:
        x: (B, K, C) float.
        ratio: (B,) float in [0, 1], the share of the ``fold`` channels shifted each way.
        fold_div: TSM folding factor, >= 2.
        mask: (B, K) bool, True = real segment, or None; padded segments are zeroed first so
            real segments next to padding take zeros, as at the sequence ends.

    Returns: (B, K, C), same dtype as ``x``.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (B, K, C), got shape {tuple(x.shape)}")
    if ratio.shape != x.shape[:1]:
        raise ValueError(f"ratio must be (B,) = ({x.shape[0]},), got {tuple(ratio.shape)}")
    if fold_div < 2:
        raise ValueError(f"fold_div ({fold_div}) must be >= 2")
    if mask is not None:
        x = x * resolve_mask(x, mask).unsqueeze(-1).to(x.dtype)
    forward_shifted = F.pad(x[:, :-1], (0, 0, 1, 0))  # t takes t-1
    backward_shifted = F.pad(x[:, 1:], (0, 0, 0, 1))  # t takes t+1
    fwd, bwd = shift_channel_weights(ratio.to(x.dtype), x.shape[-1], fold_div)
    fwd, bwd = fwd.unsqueeze(1), bwd.unsqueeze(1)  # broadcast over K
    # lerp returns start exactly at weight 0 and end exactly at weight 1, so whole-channel
    # shifts are exact copies; the two groups are disjoint, so chaining them is safe
    return torch.lerp(torch.lerp(x, forward_shifted, fwd), backward_shifted, bwd)


def sinusoidal_positions(
    length: int, channels: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> Tensor:
    """Transformer sinusoidal position codes (Vaswani et al. 2017) of segments 0..length-1.

    ``P[t, 2i] = sin(t / 10000^(2i/H))`` and ``P[t, 2i+1] = cos(t / 10000^(2i/H))`` with
    ``H = channels`` (an odd last channel takes the sine). Returns (length, channels) in [-1, 1].
    """
    position = torch.arange(length, dtype=torch.float64, device=device).unsqueeze(1)
    frequency = 10000.0 ** (-torch.arange(0, channels, 2, dtype=torch.float64, device=device) / channels)
    angles = position * frequency  # (length, ceil(channels / 2))
    codes = torch.empty(length, channels, dtype=torch.float64, device=device)
    codes[:, 0::2] = torch.sin(angles)
    codes[:, 1::2] = torch.cos(angles[:, : channels // 2])
    return codes.to(dtype)


class MoTAR(nn.Module):
    """Projection -> motion salience -> adaptive temporal shift -> Transformer, with residual.

    With ``h = proj(x)`` and ``z = shift(h, ratio(h)) + P`` (``P`` the sinusoidal segment
    positions of :func:`sinusoidal_positions`)::

        out = h + gate * centre(encoder(z) - z)

    ``encoder(z) - z`` is what the encoder's attention and feed-forward blocks add: ``h`` is
    already the residual stream, so the positions and the shifted channels steer attention
    without being added to the features themselves. ``centre`` is :func:`centre_context`
    (identity with ``centre_context=False``); ``gate`` is a learnable (H,) LayerScale vector,
    and in training the encoder term is dropped for a video with probability
    ``config.context_drop``. Reasons and measurements: ``docs/decisions.md``.
    """

    def __init__(self, config: ScorerConfig, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj
        self.fold_div = config.shift_fold_div
        self.context_drop = config.context_drop
        self.centre = config.centre_context
        self.salience = MotionSalience()
        layer = nn.TransformerEncoderLayer(
            d_model=config.hidden_dim,
            nhead=config.transformer_heads,
            dim_feedforward=2 * config.hidden_dim,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # nested tensors only pay off with heavy padding; disabling them also avoids a warning
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=config.transformer_layers, enable_nested_tensor=False
        )
        self.gate = nn.Parameter(torch.full((config.hidden_dim,), config.context_scale_init))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args: x (B, K, D) float; mask (B, K) bool or None.

        Returns: ``(features, ratio)``: features (B, K, H); ratio (B,) the shift ratio used.
        """
        h = self.proj(x)
        # None stays None: an all-real batch needs no key padding mask (keeps the fast path)
        mask = None if mask is None else resolve_mask(h, mask)
        ratio, _ = self.salience(h, mask)
        shifted = temporal_channel_shift(h, ratio, self.fold_div, mask)
        z = shifted + sinusoidal_positions(h.shape[1], h.shape[2], h.dtype, h.device)
        padding = None if mask is None else ~mask
        context = self.encoder(z, src_key_padding_mask=padding) - z
        if self.centre:
            context = centre_context(context, mask)
        return h + self.gate * drop_context(context, self.context_drop, self.training), ratio


class CORE(nn.Module):
    """Category-oriented refinement with C learnable prototypes (C, H).

    1. Video-level category logits: max-pooled segment features (max, since an anomaly can
       fill only a few segments and a mean would dilute it) dotted with each prototype,
       scaled by 1/sqrt(H).
    2. Segments (queries) cross-attend to the prototypes, keys and values each scaled by the
       video's softmax category probability, so likely categories dominate the context.
    3. ``out = LayerNorm(h + gate * dropout(centre(context)))`` (``centre``:
       :func:`centre_context`, identity with ``centre_context=False``), ``gate`` a learnable
       (H,) vector;
       in training the context is dropped per video with probability ``config.context_drop``.
    """

    def __init__(self, config: ScorerConfig, num_categories: int) -> None:
        super().__init__()
        hidden = config.hidden_dim
        self.prototypes = nn.Parameter(torch.randn(num_categories, hidden) * hidden**-0.5)
        self.attention = nn.MultiheadAttention(
            hidden, config.transformer_heads, dropout=config.dropout, batch_first=True
        )
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(hidden)
        self.scale = hidden**-0.5
        self.context_drop = config.context_drop
        self.centre = config.centre_context
        self.gate = nn.Parameter(torch.full((hidden,), config.context_scale_init))

    def forward(self, h: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args: h (B, K, H) float; mask (B, K) bool or None.

        Returns: ``(features, category_logits)``: features (B, K, H); logits (B, C).
        """
        mask = resolve_mask(h, mask)
        logits = masked_max(h, mask) @ self.prototypes.t() * self.scale
        probs = torch.softmax(logits, dim=-1)
        weighted = probs.unsqueeze(-1) * self.prototypes.unsqueeze(0)  # (B, C, H)
        context, _ = self.attention(h, weighted, weighted, need_weights=False)
        if self.centre:
            context = centre_context(context, mask)
        context = drop_context(self.dropout(context), self.context_drop, self.training)
        return self.norm(h + self.gate * context), logits


class RefineVAD(nn.Module):
    """Weakly supervised segment scorer: [MoTAR] -> [CORE] -> per-segment sigmoid head.

    Args:
        config: the scorer settings (only the model fields are read here).
        feature_dim: D, size of each input segment feature (from the data).
        num_categories: C, anomaly categories plus Normal (index 0 = Normal), at least 2.
    """

    def __init__(self, config: ScorerConfig, feature_dim: int, num_categories: int) -> None:
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"feature_dim ({feature_dim}) must be >= 1")
        if num_categories < 2:
            raise ValueError(f"num_categories ({num_categories}) must be >= 2: Normal plus at least "
                             "one anomaly category")
        self.config, self.feature_dim = config, feature_dim
        hidden = config.hidden_dim
        proj = nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU(), nn.Dropout(config.dropout))
        self.motar: MoTAR | None = MoTAR(config, proj) if config.use_motar else None
        self.proj: nn.Module | None = None if config.use_motar else proj
        self.core: CORE | None = CORE(config, num_categories) if config.use_core else None
        # without CORE the category loss still needs logits: a linear head on pooled features
        self.category_head: nn.Linear | None = (
            None if config.use_core else nn.Linear(hidden, num_categories)
        )
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden // 2),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> ScorerOutput:
        """Args: x (B, K, D) float32 segment features; mask (B, K) bool (True = real) or None.

        Returns: :class:`ScorerOutput` with scores (B, K), category logits (B, C) and
        features (B, K, H).
        """
        if x.dim() != 3 or x.shape[-1] != self.feature_dim:
            raise ValueError(f"x must be (B, K, {self.feature_dim}), got shape {tuple(x.shape)}")
        full_mask = resolve_mask(x, mask)
        if self.motar is not None:
            h, _ = self.motar(x, mask)
        else:
            assert self.proj is not None
            h = self.proj(x)
        if self.core is not None:
            h, logits = self.core(h, full_mask)
        else:
            assert self.category_head is not None
            logits = self.category_head(masked_max(h, full_mask))
        scores = torch.sigmoid(self.head(h).squeeze(-1)) * full_mask.to(h.dtype)
        return ScorerOutput(segment_scores=scores, category_logits=logits, features=h)
