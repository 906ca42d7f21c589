"""The training loss on the answer tokens only, without the logits nobody reads.

A benchmark row's labels keep only the assistant's answers (:mod:`dualvad.vlm.collate`): a handful of
tokens among 50 to 2,500. The model's own loss (``model(**batch, labels=...)``) still projects every
position onto the 151,674-token vocabulary first: (batch, seq, vocab) logits, most of the compute of a
small model and gigabytes of activations for the 2B one. :func:`answer_loss` asks the model for the
logits of the positions that predict an answer token only (``logits_to_keep`` with those positions) and
computes the same cross-entropy: equal to the model's loss, at a fraction of the cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dualvad.vlm.collate import IGNORE_INDEX


def predicting_positions(labels: torch.Tensor) -> torch.Tensor:
    """labels int64 (batch, seq) -> int64 (P,): sorted positions ``p`` whose next token ``p + 1`` is a
    label in at least one row (the union over the batch: ``logits_to_keep`` keeps the same positions in
    every row)."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens of ``batch`` (:func:`collate`'s output:
    ``input_ids``/``attention_mask``/``labels`` (batch, seq), ``pixel_values``), a float32 scalar; the
    value ``model(**batch).loss`` gives, from the logits of :func:`predicting_positions` only.

    ``model`` is an InternVL (or the DeepSpeed engine / PEFT wrapper around one) whose forward takes
    ``logits_to_keep`` as a tensor of positions (transformers >= 4.50).
    """
    labels = batch["labels"]
    positions = predicting_positions(labels)
    if positions.numel() == 0:
        raise ValueError("the batch has no labelled token: every row's answers were masked out")
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs, logits_to_keep=positions).logits  # (batch, P, vocab)
    targets = labels[:, positions + 1]  # (batch, P)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
