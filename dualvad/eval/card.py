"""The evaluated model's card: the fine-tuned export's model card with the evaluation's metrics.

The finetune stage writes the export's card (``RUN/finetune/final/README.md``) before any evaluation, and a
stage writes only its own output, so the evaluate stage writes the card with its results as
``RUN/eval/model_card.md``: the same card, its "Evaluation" section replaced by the metrics of every VLM row
(one per sampling strategy under ``eval.ablate=sampling``), and the hub's ``model-index`` metadata
(``huggingface_hub.EvalResult``) holding them.

Plain Python (no Ray): the evaluate stage calls it.
"""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard

from dualvad.eval.results import METRICS

EVALUATION_HEADING = "## Evaluation"
METRIC_NAMES = {"video_auc": "video AUC-ROC", "frame_auc": "frame AUC-ROC",
                "frame_auc_vera": "frame AUC-ROC (VERA protocol)", "frame_ap": "frame AP"}
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
