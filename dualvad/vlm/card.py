"""The fine-tuned VLM's Hugging Face cards (``huggingface_hub``: YAML metadata, then Markdown):

- the model card of the fine-tuned export (``RUN/finetune/final/README.md``, :func:`model_card`): the base
  model, the training data, the fine-tuning settings and the run's own figures;
- the evaluated model's card (``RUN/eval/model_card.md``, :func:`evaluated_card`): the model card with its
  "Evaluation" section replaced by the metrics of every VLM row and the hub's ``model-index`` metadata
  (``huggingface_hub.EvalResult``). A stage writes only its own output, so the finetune stage's card says
  evaluation is a later stage, and the evaluate stage writes this copy.

Plain functions of settings, manifests and metrics (no I/O, no Ray, no torch): the finetune and evaluate
stages write what they return. The export's dataset card is :mod:`dualvad.benchmarks.cards`'s.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import yaml
from huggingface_hub import CardData, EvalResult, ModelCard, ModelCardData

from dualvad import paths
from dualvad.eval.results import METRICS
from dualvad.vlm.finetune_config import FinetuneConfig


def _card_text(data: CardData, sections: list[str]) -> str:
    """A Hugging Face card: ``data`` as YAML front matter, then the Markdown ``sections``."""
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


#: ``owner/name``: what the hub's ``base_model`` metadata accepts (a local folder or URI is described in the
#: text only).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MODEL_TAGS = ["dualvad", "internvl", "video-anomaly-detection"]


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
                         pipeline_tag="image-text-to-text", tags=MODEL_TAGS)
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
    return ModelCard(_card_text(data, sections))


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


EVALUATION_HEADING = "## Evaluation"
METRIC_NAMES = {"video_auc": "video AUC-ROC", "frame_auc": "frame AUC-ROC",
                "frame_auc_vera": "frame AUC-ROC (VERA protocol)",
                "frame_auc_16": "frame AUC-ROC (16-frame snippets, VadCLIP's ground truth)",
                "frame_ap": "frame AP"}
DATASET_NAME = "dualvad test split"


def evaluated_card(card_text: str, split: str, metrics: dict[str, dict[str, float | None]],
                   videos: dict[str, int]) -> ModelCard:
    """``card_text`` (a model card) with the evaluation of its model on the ``split`` videos.

    Args:
        metrics: per VLM row (``"vlm/focused"`` ...), its metrics (:data:`dualvad.eval.results.METRICS`;
            ``None`` where undefined, left out of the metadata).
        videos: per row, the videos it was scored on.
    """
    card = ModelCard(card_text)
    card.data.model_name = card.data.model_name or "dualvad fine-tuned InternVL"
    card.data.eval_results = [
        EvalResult(task_type="video-anomaly-detection", dataset_type="dualvad", dataset_name=DATASET_NAME,
                   dataset_split=split, dataset_config=row, metric_type=metric,
                   metric_name=METRIC_NAMES[metric], metric_value=value)
        for row, values in metrics.items() for metric in METRICS if (value := values.get(metric)) is not None]
    head = card.text.split(EVALUATION_HEADING, 1)[0].rstrip()
    return ModelCard(f"---\n{card.data.to_yaml()}\n---\n{head}\n\n{_section(split, metrics, videos)}\n")


def _section(split: str, metrics: dict[str, dict[str, float | None]], videos: dict[str, int]) -> str:
    lines = [EVALUATION_HEADING, "",
             f"Measured by `dualvad evaluate` on the `{split}` split (`RUN/eval/metrics.json`, "
             "`RUN/eval/results.md`): scores from the model's logits on the sampled frames and clips; "
             "frame metrics over all test frames concatenated. \"n/a\": undefined on these videos "
             "(`metrics.json` says why).", "",
             "| row | videos | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |",
             "|---|---:|" + "---:|" * len(METRICS)]
    for row, values in metrics.items():
        cells = [f"{values[m]:.4f}" if values.get(m) is not None else "n/a" for m in METRICS]
        lines.append(f"| {row} | {videos[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
