"""What describes the JSONL export (:mod:`dualvad.benchmarks.export`) to people and to training frameworks.

- ``README.md``: a Hugging Face dataset card (``huggingface_hub.DatasetCard``) with the benchmarks' counts
  from their ``manifest.json``, the files and how to train on them; its ``configs`` metadata lets
  ``datasets.load_dataset`` read the JSONL files.
- ``dataset_info.json``: LLaMA-Factory's dataset registry (its ``data/README.md``): one entry per JSONL
  file in the ``sharegpt`` formatting, messages in ``conversations`` (``from`` / ``value``, ``human`` /
  ``gpt``), images in ``image``. Image paths are relative to the export folder, which is LLaMA-Factory's
  ``media_dir`` when the folder is its ``dataset_dir``.
- ``internvl_meta_<split>.json``: InternVL's meta file for ``internvl_chat`` fine-tuning (``--meta_path``):
  one entry per JSONL file of that split, with ``root`` (the folder image paths are relative to),
  ``annotation`` (the JSONL file), ``data_augment``, ``repeat_time`` and ``length`` (its rows). Both paths
  are the export folder's absolute location: move the folder and they must be rewritten.

Plain functions of the file list and the manifest (no I/O): the export writes what they return.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from dualvad import paths
from dualvad import schema as S

PREFIX = "dualvad"  # dataset names: dualvad_<kind>_<split>
TAGS = ["dualvad", "video-anomaly-detection", "internvl"]


def dataset_name(file_name: str) -> str:
    """``image_train.jsonl`` -> ``dualvad_image_train``."""
    return f"{PREFIX}_{file_name.removesuffix('.jsonl')}"


def file_split(file_name: str) -> str:
    """``video_test.jsonl`` -> ``test`` (the export names files ``<kind>_<split>.jsonl``)."""
    return file_name.removesuffix(".jsonl").split("_", 1)[1]


def llamafactory_dataset_info(files: dict[str, int]) -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json`` for the JSONL ``files`` (name -> rows), in name order."""
    return {dataset_name(name): {
        "file_name": name,
        "formatting": "sharegpt",
        "columns": {"messages": S.CONVERSATIONS, "images": "image"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    } for name in sorted(files)}


def internvl_meta(files: dict[str, int], root: str, split: str) -> dict[str, Any]:
    """InternVL's meta file for the JSONL ``files`` (name -> rows) of ``split``, exported to ``root`` (the
    folder's absolute path or URI): each file once, unaugmented."""
    return {dataset_name(name): {
        "root": root,
        "annotation": f"{root}/{name}",
        "data_augment": False,
        "repeat_time": 1,
        "length": rows,
    } for name, rows in sorted(files.items()) if file_split(name) == split}


def dataset_card(manifest: dict[str, Any], files: dict[str, int], images: int) -> DatasetCard:
    """The export's dataset card: ``manifest`` is ``RUN/benchmarks/manifest.json``, ``files`` the JSONL
    files written (name -> rows), ``images`` the JPEG frames under ``images/``."""
    rows = sum(files.values())
    configs = [{"config_name": kind, "data_files": [{"split": file_split(name), "path": name}
                                                    for name in sorted(files) if name.startswith(f"{kind}_")]}
               for kind in paths.BENCHMARK_KINDS]
    data = DatasetCardData(pretty_name="dualvad anomaly benchmarks (image and video)",
                           task_categories=["image-text-to-text"], size_categories=[_size_category(rows)],
                           tags=TAGS, configs=configs)
    sections = [
        "# dualvad anomaly benchmarks",
        "Made by `dualvad build-benchmarks` from the frames the anomaly-focused sampler chose in each video "
        "of the run's corpus, exported by `dualvad export-jsonl` as InternVL-style JSONL "
        "(`{\"id\", \"image\": [paths], \"conversations\"}`) with every frame as a JPEG under `images/`.",
        "## Benchmarks\n\n" + _benchmark_table(manifest),
        "## Files\n\n" + _file_table(files, images),
        "## Training on it\n\n" + _USAGE,
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


_USAGE = (
    "- LLaMA-Factory: `dataset_dir: <this folder>` and `dataset: dualvad_image_train,dualvad_video_train` "
    f"(the entries of `{paths.LLAMAFACTORY_DATASET_INFO}`; image paths resolve against this folder).\n"
    "- InternVL (`internvl_chat` fine-tuning): `--meta_path <this folder>/"
    f"{paths.INTERNVL_META.format(split='train')}`.\n"
    "- `datasets.load_dataset(\"<this folder>\", \"image\")` (or `\"video\"`), from this card's `configs`.")


def _benchmark_table(manifest: dict[str, Any]) -> str:
    lines = ["| benchmark | rows | splits | anomalous share | pseudo-labelled | categories |",
             "|---|---:|---|---:|---:|---|"]
    for kind in paths.BENCHMARK_KINDS:
        entry = manifest[kind]
        splits = ", ".join(f"{split} {count}" for split, count in entry["splits"].items())
        categories = ", ".join(f"{name} {count}" for name, count in entry["categories"].items())
        lines.append(f"| {kind} | {entry['rows']} | {splits} | {entry['anomalous_share']} | "
                     f"{entry['pseudo_labelled']} | {categories} |")
    return ("\n".join(lines) + f"\n\nCounted from `RUN/{paths.BENCHMARKS}/{paths.MANIFEST_FILE}` (seed "
            f"{manifest['seed']}). Image rows: one frame, a yes/no anomaly question and, for an anomalous "
            "frame, its category. Video rows: a clip of frames (`Frame1: <image>` ...), which frames are "
            "abnormal and a 0-10 abnormality score. Pseudo-labelled rows take their frame labels from the "
            "segment scorer where the corpus has no temporal annotation.")


def _file_table(files: dict[str, int], images: int) -> str:
    lines = ["| file | rows | LLaMA-Factory / InternVL name |", "|---|---:|---|"]
    lines += [f"| `{name}` | {rows} | `{dataset_name(name)}` |" for name, rows in sorted(files.items())]
    return "\n".join(lines) + f"\n\n{images} frames under `images/`, each stored once."


def _size_category(rows: int) -> str:
    """The hub's size bucket for ``rows`` examples."""
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if rows < bound:
            return label
    return "n>1M"
