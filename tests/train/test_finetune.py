"""The finetune stage on local Ray: 2 Ray Train workers, DeepSpeed ZeRO-2 on CPU, the tiny InternVL,
a few steps on benchmarks built from the shared scored run; the exported model reloads and generates."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from transformers import AutoProcessor, InternVLProcessor

from dualvad import paths
from dualvad.config import ConfigError, load_config
from dualvad.pipeline.build_benchmarks import run_build_benchmarks
from dualvad.pipeline.sample import run_sample
from dualvad.rundir import open_run
from dualvad.train.finetune import total_steps
from dualvad.train.finetune_worker import STATE_FILE, FinetuneError, freeze
from dualvad.train.lr_schedule import lr_factor
from dualvad.vlm.collate import encode_example
from dualvad.vlm.model import build_tiny_model, load_model
from dualvad.vlm.processor import load_processor

from faultlog import record_fault
from raykill import Killer, registered_result

STEPS = 6
# It only copies the shared scored run, so it runs beside the tiny demo's tests: the two pytest-xdist
# workers then carry about the same time (tests/conftest.py, docs/decisions.md).
pytestmark = pytest.mark.xdist_group("tiny_demo")


@pytest.fixture(scope="module")
def benchmarked(scored_run, tmp_path_factory):
    """The scored run with small benchmarks: 64 px frames, budget 8, clips of 4, in a run of its own."""
    config, _ = scored_run
    run = tmp_path_factory.mktemp("finetune") / "run"
    for part in ("segments", "scorer", "scores"):  # with their stage records: the inputs of sample
        shutil.copytree(Path(config.run) / part, run / part)
    config = dataclasses.replace(
        config, run=str(run),
        sample=dataclasses.replace(config.sample, strategy="focused", budget=8, tau=0.2),
        benchmarks=dataclasses.replace(config.benchmarks, shards=2, image_size=64, clip_frames=4))
    run_sample(config)
    run_build_benchmarks(config)
    return config


def _after_step(storage: Path, step: int, kept: list[int]):
    """The Killer's ``ready``: true once Ray Train registered a checkpoint of ``step`` or later under
    ``storage``; ``kept`` then gets the steps of the checkpoints the controller keeps."""
    def ready() -> bool:
        result = registered_result(storage)
        if result is None or result.metrics["step"] < step:
            return False
        kept[:] = [int(metrics["step"]) for _, metrics in result.best_checkpoints]
        return True
    return ready


@pytest.fixture(scope="module")
def finetuned(benchmarked):
    """Two workers, ZeRO-2, STEPS steps, checkpoints every 2, TensorBoard tracking; one worker process is
    SIGKILLed once the second checkpoint is registered (one run serves the plain checks and the resume check:
    a run costs a minute). (config, summary, the pid of the killed worker or None, the steps of the
    checkpoints Ray Train kept then)."""
    from dualvad.train.finetune import run_finetune

    config = dataclasses.replace(benchmarked, finetune=dataclasses.replace(
        benchmarked.finetune, model="tiny", workers=2, cpus_per_worker=0.5, zero_stage=2, max_steps=STEPS,
        warmup_steps=1, report_every=2, max_length=512, tracking="tensorboard"))
    kept: list[int] = []
    storage = Path(config.run) / paths.WORK_DIR  # Ray Train's storage: the stage's scratch folder
    with Killer("RayTrainWorker", _after_step(storage, 4, kept)) as killer:
        summary = run_finetune(config)
    return config, summary, killer.pid, kept


def test_two_workers_zero2_run_and_log_finite_losses(finetuned):
    config, summary, _, _ = finetuned
    assert summary.steps == STEPS and math.isfinite(summary.final_loss)
    assert summary.image_rows > 0 and summary.video_rows > 0
    log = json.loads((Path(config.run) / "finetune" / "train_log.json").read_text())
    assert [entry["step"] for entry in log["history"]] == list(range(1, STEPS + 1))
    for entry in log["history"]:
        assert math.isfinite(entry["loss"]) and entry["loss"] > 0
        assert entry["samples_per_s"] > 0 and entry["tokens_per_s"] > 0
        assert entry["peak_rss_mib"] > 100  # a worker holding torch, DeepSpeed and the model
        assert entry["mfu"] is None and entry["peak_gpu_mib"] is None  # CPU: no peak FLOP/s, no GPU
    # Warmup 1, then linear decay, across the worker's restart too (the checkpoint holds the schedule).
    expected = [config.finetune.lr * lr_factor(step, 1, STEPS) for step in range(STEPS)]
    assert [entry["lr"] for entry in log["history"]] == pytest.approx(expected, rel=1e-9)


def test_final_export_reloads_and_generates(finetuned):
    config, summary, _, _ = finetuned
    final = Path(summary.output)
    model, processor = load_model(final), load_processor(final)
    stock = AutoProcessor.from_pretrained(final)  # the export is a whole InternVL processor, not a tokenizer
    assert isinstance(stock, InternVLProcessor) and stock.image_processor is not None
    base = load_model(Path(config.run) / "finetune" / "base")
    changed = [not torch.equal(a, b) for a, b in zip(model.parameters(), base.parameters(), strict=True)]
    assert any(changed), "fine-tuning left every weight unchanged"
    run = open_run(config.run)
    row = pq.read_table(run.parquet_files("benchmarks", "video")[0]).to_pylist()[0]
    example = encode_example(row, processor, 512)
    prompt_end = int((example["labels"] != -100).nonzero()[0])  # the answer's first token
    with torch.inference_mode():
        out = model.generate(input_ids=example["input_ids"][None, :prompt_end],
                             attention_mask=example["attention_mask"][None, :prompt_end],
                             pixel_values=example["pixel_values"], max_new_tokens=2, do_sample=False)
    assert out.shape == (1, prompt_end + 2)


def test_total_steps_and_settings_checks():
    settings = load_config().finetune
    assert total_steps(settings, 10, 5) == settings.max_steps
    by_epochs = dataclasses.replace(settings, max_steps=0, epochs=2, workers=2, micro_batch=2)
    assert total_steps(by_epochs, 10, 5) == math.ceil(2 * 15 / 4)
    with pytest.raises(ConfigError, match="'curriculum' must be one of 'joint', 'image_first'"):
        dataclasses.replace(settings, curriculum="video_first")
    with pytest.raises(ConfigError, match="'report_every' must be >= 1, got 0"):
        dataclasses.replace(settings, report_every=0)


def test_freeze_vision_and_projector():
    model = build_tiny_model()
    everything = sum(p.numel() for p in model.parameters())
    trainable = freeze(model, vision=True, projector=True)
    assert trainable < everything
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    assert not any(p.requires_grad for p in model.model.multi_modal_projector.parameters())
    assert all(p.requires_grad for p in model.model.language_model.parameters())
    embedding_rows = model.get_input_embeddings().weight.shape[0]
    assert freeze(model, vision=True, projector=True, embeddings=True) == trainable - embedding_rows * 64
    assert not model.get_input_embeddings().weight.requires_grad
    assert not model.get_output_embeddings().weight.requires_grad  # tied: the same tensor


def test_a_killed_worker_is_replaced_and_training_resumes_from_the_last_checkpoint(finetuned):
    """A worker process died (SIGKILL) once the second checkpoint (step 4 of 6) was registered: Ray Train
    started a new worker group, which loaded the last checkpoint it registered and continued from there."""
    config, summary, killed, _ = finetuned
    assert killed is not None, "no worker was killed: training ended before the second checkpoint?"
    assert summary.steps == STEPS
    log = json.loads((Path(config.run) / "finetune" / "train_log.json").read_text())
    (resumed,) = log["resumed_after"]
    record_fault(f"finetune: Ray Train worker SIGKILLed after the step-4 checkpoint (of {STEPS})",
                 f"resumed after step {resumed}; steps logged once each", rows_lost=0)
    assert resumed in (4, 6)  # the second checkpoint, or the last if it was registered before the kill landed
    assert [entry["step"] for entry in log["history"]] == list(range(1, STEPS + 1))


def test_only_the_last_checkpoint_is_kept_and_none_once_published(finetuned):
    """finetune.keep_checkpoints=1 (the default): when the worker was killed, Ray Train's snapshot listed one
    checkpoint, the one it had just registered (step 4 or 6); after publishing, the scratch folder that held
    them is gone and the output holds the export, not checkpoints."""
    config, _, _, kept = finetuned
    assert kept in ([4], [6])
    run = Path(config.run)
    assert not [path.name for path in (run / paths.WORK_DIR).iterdir() if "finetune" in path.name]
    assert sorted(path.name for path in (run / "finetune").iterdir()) == [
        "_stage.json", "base", "config.yaml", "final", "tensorboard", "train_log.json"]


def test_tensorboard_events_equal_the_step_log(finetuned):
    """finetune.tracking=tensorboard: RUN/finetune/tensorboard holds one scalar series per step metric whose
    (step, value) pairs are the step log's (float32, as TensorBoard stores them), across the restart."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, _, _, _ = finetuned
    history = json.loads((Path(config.run) / "finetune" / "train_log.json").read_text())["history"]
    events = EventAccumulator(str(Path(config.run) / "finetune" / "tensorboard"))
    events.Reload()
    logged = {key for key, value in history[0].items() if value is not None and key != "step"}
    assert set(events.Tags()["scalars"]) == logged  # mfu and peak_gpu_mib are None on a CPU: left out
    assert "loss" in logged and "lr" in logged
    for key in logged:
        assert [(event.step, event.value) for event in events.Scalars(key)] == [
            (entry["step"], float(np.float32(entry[key]))) for entry in history], key


def test_model_card_of_the_export(finetuned):
    """RUN/finetune/final/README.md: a Hugging Face model card naming the base model, the benchmarks' row
    counts from their manifest, the run's figures and its settings, and where evaluation writes its
    metrics."""
    from huggingface_hub import ModelCard

    config, summary, _, _ = finetuned
    card = ModelCard.load(Path(summary.output) / "README.md")
    assert card.data.base_model is None  # a random preset is no hub model
    assert (card.data.library_name, card.data.pipeline_tag) == ("transformers", "image-text-to-text")
    assert "The random `tiny` InternVL preset" in card.text
    manifest = json.loads((Path(config.run) / "benchmarks" / "manifest.json").read_text())
    for kind, fine_tuned in (("image", summary.image_rows), ("video", summary.video_rows)):
        entry = manifest[kind]
        assert (f"| {kind} | {entry['rows']} | {entry['splits']['train']} | {fine_tuned} | "
                f"{entry['anomalous_share']} | {entry['pseudo_labelled']} |") in card.text
    history = json.loads((Path(config.run) / "finetune" / "train_log.json").read_text())["history"]
    assert (f"{STEPS} optimizer steps on 2 workers, full fine-tuning; loss {history[0]['loss']:.4f} at step "
            f"1, {history[-1]['loss']:.4f} at step {STEPS}") in card.text
    settings_block = card.text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(settings_block) == {"finetune": dataclasses.asdict(config.finetune)}
    assert "`dualvad evaluate`" in card.text and "`RUN/eval/metrics.json`" in card.text


def test_lora_run_exports_a_plain_model_with_merged_adapters(benchmarked, tmp_path):
    """LoRA on the language model (one worker: the shared run has two), vision tower and projector frozen,
    no warmup (constant lr from step 1):
    the export is a plain InternVL whose frozen parts equal the base and whose adapted layers moved. This run
    feeds the rows through the in-memory path (``run_finetune(data="memory")``); the other run streams
    them."""
    from dualvad.train.finetune import run_finetune

    run = tmp_path / "run"
    shutil.copytree(Path(benchmarked.run) / "benchmarks", run / "benchmarks")
    settings = dataclasses.replace(
        benchmarked.finetune, model="tiny", workers=1, max_steps=2, report_every=2, warmup_steps=0, lr=1e-3,
        max_length=512, lora_rank=4, lora_alpha=8.0, lora_dropout=0.0, freeze_vision=True,
        freeze_projector=True)
    summary = run_finetune(dataclasses.replace(benchmarked, run=str(run), finetune=settings), data="memory")
    log = json.loads((run / "finetune" / "train_log.json").read_text())
    assert [entry["lr"] for entry in log["history"]] == [1e-3, 1e-3]
    model = load_model(summary.output)
    base = dict(load_model(run / "finetune" / "base").named_parameters())
    tuned = dict(model.named_parameters())
    assert tuned.keys() == base.keys()  # no adapter or base_layer keys left
    for name, parameter in tuned.items():
        adapted = ".language_model.layers." in name and name.endswith("_proj.weight")
        assert torch.equal(parameter, base[name]) != adapted, name
    assert not (run / "finetune" / "tensorboard").exists()  # finetune.tracking=none, the default
    card = (Path(summary.output) / "README.md").read_text()
    assert "2 optimizer steps on 1 worker, LoRA (rank 4, alpha 8.0) on the language model" in card


def test_export_without_saved_checkpoints_writes_only_the_step_log(tmp_path):
    """``run_finetune(save_checkpoints=False)``: the last report holds the state file only; the driver writes
    the step log and publishes no model (and a missing export is an error when checkpoints are on)."""
    from ray.train import Checkpoint

    from dualvad.train.finetune import _export

    state = {"step": 2, "history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]}
    reported = tmp_path / "checkpoint"
    reported.mkdir()
    (reported / STATE_FILE).write_text(json.dumps(state))
    out = open_run(str(tmp_path / "out"))
    assert _export(out, Checkpoint.from_directory(str(reported)), model=False) == state
    assert json.loads((tmp_path / "out" / "train_log.json").read_text()) == state
    assert not (tmp_path / "out" / "final").exists()
    with pytest.raises(FinetuneError, match="has no hf/ export"):
        _export(out, Checkpoint.from_directory(str(reported)), model=True)


def test_the_data_path_keeps_a_runs_identity_and_a_run_without_checkpoints_has_another(tmp_path):
    """bench/finetune.py's switches, planned on a run with published benchmarks: the data path changes how
    rows travel, not the result (same fingerprint); a run without checkpoints publishes no model, so its
    record must not let a run that needs one skip (another fingerprint, an input that says why)."""
    from dualvad.stages.config import StagesConfig
    from dualvad.stages.plan import dry_run
    from dualvad.stages.registry import Stage
    from dualvad.stages.runner import run_stage
    from dualvad.train.finetune import run_finetune

    run = open_run(str(tmp_path / "run"))
    run_stage(Stage("build-benchmarks", paths.BENCHMARKS), run, {},
              lambda context: context.out.write_text("{}", paths.MANIFEST_FILE), StagesConfig())
    config = load_config(None, [f"run={run.uri}"])
    with dry_run():
        streamed, in_memory = run_finetune(config), run_finetune(config, data="memory")
        unsaved = run_finetune(config, save_checkpoints=False)
    assert streamed.fingerprint == in_memory.fingerprint and streamed.inputs.keys() == {paths.BENCHMARKS}
    assert unsaved.fingerprint != streamed.fingerprint
    assert unsaved.inputs == {**streamed.inputs, "checkpoints": "none"}
    assert not any(key in streamed.settings for key in ("finetune.data", "finetune.save_checkpoints"))


def test_the_snapshot_file_is_the_one_ray_train_writes():
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    from raykill import SNAPSHOT_FILE

    assert SNAPSHOT_FILE == CHECKPOINT_MANAGER_SNAPSHOT_FILENAME  # a Ray upgrade that renames it fails here
