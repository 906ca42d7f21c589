"""LoRA adapters (peft) on the language model of an InternVL, and merging them back for the export.

:func:`apply_lora` wraps the model in a ``peft.PeftModel`` with rank-``r`` adapters on the named Linear
layers of the *language model only*: InternVL's vision tower has Linear layers of the same names
(``q_proj``, ``k_proj``, ``v_proj``), so the targets are a regular expression anchored at
``model.language_model.`` (:func:`target_pattern`). peft freezes every base weight; the fine-tuning loop
then unfreezes the vision tower and projector according to ``finetune.freeze_*`` (InternVL's own recipe
trains the projector beside an LLM LoRA).

:func:`merged_model` folds the adapters into the base weights (``W + (alpha / r) * B @ A``) and returns the
plain InternVL, which ``save_pretrained`` writes as an ordinary checkpoint (no adapter files, no peft needed
to load it).

No Ray here: the Ray Train loop in :mod:`dualvad.train.finetune` calls these functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

LANGUAGE_MODEL_PREFIX = "model.language_model."


def target_pattern(targets: Sequence[str]) -> str:
    """The regular expression peft full-matches against module names: a module whose last name is one of
    ``targets`` inside ``model.language_model``."""
    names = "|".join(re.escape(target) for target in targets)
    return rf"{re.escape(LANGUAGE_MODEL_PREFIX)}(.*\.)?({names})"


def _check_targets(model: torch.nn.Module, targets: Sequence[str]) -> None:
    """Every target must name at least one Linear layer of the language model (a typo is an error)."""
    if not targets:
        raise ValueError("LoRA needs at least one target module name")
    found = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if name.startswith(LANGUAGE_MODEL_PREFIX) and isinstance(module, torch.nn.Linear)}
    missing = [target for target in targets if target not in found]
    if missing:
        raise ValueError(f"LoRA targets {missing} name no Linear layer of the language model; "
                         f"its Linear layers are {sorted(found)}")


def apply_lora(model: torch.nn.Module, rank: int, alpha: float, dropout: float,
               targets: Sequence[str]) -> torch.nn.Module:
    """Wrap an InternVL in a ``peft.PeftModel``: LoRA of rank ``rank`` (scaling ``alpha / rank``, dropout
    ``dropout`` on the adapter input) on the ``targets`` Linear layers of its language model (the caller's
    choice; ``finetune.lora_targets`` holds the default).

    Each adapted ``Linear(in, out)`` gains ``rank * (in + out)`` trainable parameters (A: (rank, in), B:
    (out, rank), B initialised to zero so the wrapped model starts equal to the base). Every other
    parameter is frozen. Raises ``ValueError`` for a rank < 1 or a target that matches nothing.
    """
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    _check_targets(model, targets)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=target_pattern(targets))
    return get_peft_model(model, config)


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The InternVL inside a ``PeftModel`` (adapters stay in place), or ``model`` itself."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def merged_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model to export: a ``PeftModel``'s adapters merged into the base weights (in place, the
    wrapper is unusable afterwards), or ``model`` itself when it has no adapters."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model
