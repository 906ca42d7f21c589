"""The model card of the fine-tuned export (``RUN/finetune/final/README.md``).

A Hugging Face model card (``huggingface_hub.ModelCard``: YAML metadata, then Markdown) that says what the
folder holds: the base model, the training data (the benchmarks' row counts from their ``manifest.json``),
the fine-tuning settings and the run's own figures (steps, losses). The model is evaluated after this stage
by another one (``dualvad evaluate``), which writes its own output only: the card says so and where those
metrics land (``RUN/eval/model_card.md``: this card with them, :mod:`dualvad.eval.card`).

Plain Python (no Ray, no torch): the finetune driver calls it.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

from dualvad import paths
from dualvad.vlm.finetune_config import FinetuneConfig

#: ``owner/name``: what the hub's ``base_model`` metadata accepts (a local folder or URI is described in the
#: text only).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TAGS = ["dualvad", "internvl", "video-anomaly-detection"]


def model_card(settings: FinetuneConfig, presets: tuple[str, ...], manifest: dict[str, Any],
               train_rows: dict[str, int], history: list[dict[str, Any]]) -> ModelCard:
    """The card of a model fine-tuned with ``settings``.

    Args:
        presets: the names of the random presets (:data:`dualvad.vlm.model.PRESETS`).
        manifest: ``RUN/benchmarks/manifest.json``.
        train_rows: train-split rows fine-tuned on, per benchmark (``{"image": n, "video": m}``).
        history: the run's step log (``train_log.json``'s ``history``: ``step``, ``loss``, ``lr`` ...).
    """
    is_hub_id = settings.model not in presets and bool(_HUB_ID.match(settings.model))
    data = ModelCardData(base_model=settings.model if is_hub_id else None, library_name="transformers",
                         pipeline_tag="image-text-to-text", tags=TAGS)
    sections = [
        "# InternVL fine-tuned for video anomaly detection (dualvad)",
        "Fine-tuned with `dualvad finetune` (Ray Train + DeepSpeed) on the image and the video anomaly "
        "benchmarks that `dualvad build-benchmarks` made from the run's corpus. Load it with "
        "`transformers` (`AutoModelForImageTextToText`, `AutoProcessor`) or "
        "`dualvad.vlm.model.load_model`.",
        "## Base model\n\n" + _base_model(settings.model, presets, is_hub_id),
        "## Training data\n\n" + _data_table(manifest, train_rows),
        "## Training\n\n" + _training(settings, history),
        "## Evaluation\n\n" + _EVALUATION,
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


_EVALUATION = (
    "Not measured when this card was written: evaluation is a later stage. `dualvad evaluate` scores this "
    f"model on the test split and writes `RUN/{paths.EVAL}/{paths.METRICS_FILE}` (video AUC, frame AUC, "
    f"VERA frame AUC, AP, per category), `RUN/{paths.EVAL}/results.md` and "
    f"`RUN/{paths.EVAL}/{paths.EVAL_MODEL_CARD_FILE}`: this card with its metrics.")


def _base_model(model: str, presets: tuple[str, ...], is_hub_id: bool) -> str:
    if model in presets:
        return (f"The random `{model}` InternVL preset (`dualvad.vlm.model.PRESETS`): the InternVL "
                "architecture with random weights, not a pretrained model, saved in "
                f"`RUN/{paths.FINETUNE}/{paths.FINETUNE_BASE_DIR}`. Its answers carry no knowledge beyond "
                "this run's training.")
    if is_hub_id:
        return f"[`{model}`](https://huggingface.co/{model})."
    return f"The model in `{model}`."


def _data_table(manifest: dict[str, Any], train_rows: dict[str, int]) -> str:
    lines = ["| benchmark | rows | train split | fine-tuned on | anomalous share | pseudo-labelled |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in paths.BENCHMARK_KINDS:
        entry = manifest[kind]
        lines.append(f"| {kind} | {entry['rows']} | {entry['splits'].get('train', 0)} | {train_rows[kind]} | "
                     f"{entry['anomalous_share']} | {entry['pseudo_labelled']} |")
    return ("\n".join(lines) + f"\n\nFrom `RUN/{paths.BENCHMARKS}/{paths.MANIFEST_FILE}` (seed "
            f"{manifest['seed']}, {manifest['shards']} shards per benchmark). Image rows: one frame with a "
            "yes/no anomaly question (and its category). Video rows: a clip of frames with a localisation "
            "question and a 0-10 abnormality score. Pseudo-labelled rows take their frame labels from the "
            "segment scorer where the corpus has no temporal annotation.")


def _training(settings: FinetuneConfig, history: list[dict[str, Any]]) -> str:
    method = (f"LoRA (rank {settings.lora_rank}, alpha {settings.lora_alpha}) on the language model, merged "
              "into the weights for this export" if settings.lora_rank else "full fine-tuning")
    workers = f"{settings.workers} worker{'s' if settings.workers != 1 else ''}"
    figures = (f"{len(history)} optimizer steps on {workers}, {method}; loss "
               f"{history[0]['loss']:.4f} at step 1, {history[-1]['loss']:.4f} at step {history[-1]['step']} "
               f"(the step log: `RUN/{paths.FINETUNE}/{paths.TRAIN_LOG_FILE}`).") if history else method
    settings_yaml = yaml.safe_dump({"finetune": asdict(settings)}, sort_keys=False)
    return f"{figures}\n\nSettings (`finetune.*`):\n\n```yaml\n{settings_yaml}```"
