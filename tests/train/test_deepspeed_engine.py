"""DeepSpeed engines as the fine-tuning workers build them (:func:`build_engine`), in this process: world
size 1, gloo, CPU. The optimizer is the one the generated config names, ZeRO-Offload starts and trains,
the ZeRO-3 export holds whole weights; DeepSpeed's private state is touched in one module only."""

from __future__ import annotations

import ast
import dataclasses
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from dualvad.config import load_config
from dualvad.train import deepspeed_config
from dualvad.train.deepspeed_compat import SHM_COMM_OP, TESTED_VERSIONS, deepspeed_minor_version
from dualvad.train.finetune_worker import build_engine, prepare_model, save_export
from dualvad.vlm.model import load_model, save_tiny_model
from dualvad.vlm.processor import load_processor

PACKAGE = Path(__file__).resolve().parents[2] / "dualvad"
COMPAT_MODULE = PACKAGE / "train" / "deepspeed_compat.py"


@pytest.fixture(scope="module")
def process_group():
    """A one-rank gloo process group and the launcher's variables, as Ray Train gives each worker."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": str(port)}.items():
            patch.setenv(name, value)
        dist.init_process_group("gloo", rank=0, world_size=1)
        yield
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def _settings(**changes):
    """CPU fine-tuning settings, one worker, constant lr (the schedule does not matter here)."""
    base = dataclasses.replace(load_config().finetune, use_gpu=False, workers=1, micro_batch=1, grad_accum=1,
                               warmup_steps=0, lora_rank=0, gradient_checkpointing=False, lr=1e-3)
    return dataclasses.replace(base, **changes)


def _batch(processor) -> dict[str, torch.Tensor]:
    """One frame and a short question; the labels are the input ids (int64 (1, seq))."""
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    inputs = dict(processor(text="<image>\nIs anything unusual happening? No", images=[image],
                            return_tensors="pt"))
    inputs["labels"] = inputs["input_ids"].clone()
    return inputs


def _train(engine, batch, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
        losses.append(float(loss.detach()))
    return losses


def _engine(tiny_folder: Path, **changes):
    settings = _settings(**changes)
    model = prepare_model(load_model(tiny_folder), settings)
    return build_engine(model, settings, world=1, steps=2), settings


def test_the_optimizer_is_the_one_the_config_names(process_group, tiny_folder, monkeypatch):
    """The ``optimizer`` section of the generated config is what runs: changed betas and eps reach the
    engine's AdamW (a client optimizer would keep torch's defaults)."""
    monkeypatch.setattr(deepspeed_config, "ADAM_BETAS", (0.8, 0.95))
    monkeypatch.setattr(deepspeed_config, "ADAM_EPS", 1e-6)
    engine, settings = _engine(tiny_folder, zero_stage=2, weight_decay=0.03)
    inner = engine.optimizer.optimizer  # ZeRO's wrapper holds the basic optimizer
    assert type(inner) is torch.optim.AdamW
    (group,) = inner.param_groups
    assert group["betas"] == (0.8, 0.95) and group["eps"] == 1e-6
    assert group["weight_decay"] == 0.03 and group["lr"] == settings.lr


def test_zero_offload_starts_and_trains_on_cpu(process_group, tiny_folder):
    """``finetune.offload=true``: DeepSpeed builds its CPU Adam over the offloaded optimizer state."""
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    engine, _ = _engine(tiny_folder, zero_stage=2, offload=True)
    assert engine.zero_cpu_offload()
    assert isinstance(engine.optimizer.optimizer, DeepSpeedCPUAdam)
    before = [p.detach().clone() for p in engine.module.parameters()]
    losses = _train(engine, _batch(load_processor(tiny_folder)), steps=2)
    assert all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, engine.module.parameters(), strict=True))


def test_zero3_export_holds_the_whole_trained_weights(process_group, tiny_folder, tmp_path):
    """At ZeRO-3 every rank holds a partition only (even at world size 1 the module's tensors are empty):
    the export gathers them, and the folder loads back with the engine's weights and its processor."""
    import deepspeed
    from transformers import AutoProcessor, InternVLProcessor

    engine, _ = _engine(tiny_folder, zero_stage=3)
    processor = load_processor(tiny_folder)
    _train(engine, _batch(processor), steps=1)
    assert any(p.numel() == 0 for p in engine.module.parameters())  # partitioned
    save_export(engine, processor, str(tmp_path / "hf"), write=True)
    exported = dict(load_model(tmp_path / "hf").named_parameters())
    base = dict(load_model(tiny_folder).named_parameters())
    named = dict(engine.module.named_parameters())
    with deepspeed.zero.GatheredParameters(list(named.values()), modifier_rank=None):
        trained = {name: p.detach().clone() for name, p in named.items()}
    assert trained.keys() == exported.keys()
    for name, weight in trained.items():
        torch.testing.assert_close(exported[name], weight, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(exported[name], base[name]) for name in exported)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "hf"), InternVLProcessor)


def test_the_installed_deepspeed_is_a_tested_version():
    """dualvad.train.deepspeed_compat sets a private switch of these versions only: a new DeepSpeed fails
    here until the switch is checked against it (and TESTED_VERSIONS extended)."""
    assert deepspeed_minor_version() in TESTED_VERSIONS


def test_the_shm_switch_stops_deepspeed_building_its_shm_op():
    """The switch is the key DeepSpeed's comm backend reads before building the op: after it, the build
    function returns no op (without it, it would JIT-compile one)."""
    from deepspeed.comm.torch import build_shm_op
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    from dualvad.train.deepspeed_compat import skip_shm_comm_build

    assert ShareMemCommBuilder.NAME == SHM_COMM_OP
    assert skip_shm_comm_build()
    assert build_shm_op() is None


def _private_deepspeed_uses(path: Path) -> list[str]:
    """``deepspeed.<private>`` and ``engine.<private>`` attribute reads in one file (``line: name``)."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        root = node.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in {"deepspeed", "engine"}:
            uses.append(f"{node.lineno}: {ast.unparse(node)}")
    return uses


def test_deepspeed_private_state_is_touched_in_the_compat_module_only():
    offenders = {str(path.relative_to(PACKAGE)): uses for path in sorted(PACKAGE.rglob("*.py"))
                 if path != COMPAT_MODULE and (uses := _private_deepspeed_uses(path))}
    assert offenders == {}
    assert _private_deepspeed_uses(COMPAT_MODULE)  # the scan does see the one it allows
