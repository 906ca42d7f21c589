"""How much one frame tells: a small CNN trained from scratch on a run's image-benchmark rows.

The VLM's frame score is its P("Yes") to one sampled frame, so the image benchmark's rows bound what any
model that starts without visual knowledge can learn per frame. This probe trains a 3-layer CNN (no
pretraining, like the random ``small`` VLM) on the train rows' frames and prints, after each epoch, the
P(anomalous) AUC over the test rows (their labels come from the temporal annotations), overall and per
category (that category's rows against the normal videos' rows). It is row-level, not the evaluation's
segment-level frame AUC, and it reads only the benchmark: it runs on any run whose benchmarks are built.

For a generated corpus, ``--synth VIDEOS SECONDS SEED TEST_SHARE [CAMERAS]`` (the corpus's ``SynthSpec``)
gives each training frame its true label too: the probe then prints the scorer pseudo-labels' precision and
recall against the truth and trains a second CNN on the true labels, which separates label noise from what
the frames show.

    python bench/frame_probe.py runs/demo --synth 320 3 0 0.25
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

from dualvad import paths
from dualvad.corpus.layout import NORMAL_LABEL
from dualvad.rundir import open_run

SIDE = 112  # px: the `small` VLM's tile
COLUMNS = ["split", "video_id", "video_label", "frame_index", "anomalous", "pseudo", "image"]


def read_rows(run: str) -> list[dict]:
    """The run's image-benchmark rows (``COLUMNS``), shard order."""
    table = open_run(run).read_table(paths.BENCHMARKS, "image", columns=COLUMNS)
    if table is None:
        raise SystemExit(f"{run}/benchmarks/image has no Parquet shard: build the benchmarks first "
                         f"(dualvad build-benchmarks run={run})")
    return table.to_pylist()


def pixels(rows: list[dict]) -> torch.Tensor:
    """float32 (N, 3, SIDE, SIDE) in [0, 1]: each row's JPEG resized to the VLM tile."""
    arrays = [np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB").resize((SIDE, SIDE)), np.float32)
              for r in rows]
    return torch.from_numpy(np.stack(arrays) / 255.0).permute(0, 3, 1, 2).contiguous()


def true_labels(rows: list[dict], synth: list[str]) -> np.ndarray:
    """bool (N,): whether each row's frame lies in its video's generated event (``plan_corpus``)."""
    from dualvad.corpus.synth_plan import SynthSpec, plan_corpus

    videos, seconds, seed, test_share, *cameras = synth
    spec = SynthSpec(videos=int(videos), seconds=float(seconds), seed=int(seed), test_share=float(test_share),
                     cameras=int(cameras[0]) if cameras else 0)
    plans = {plan.video_id: plan for plan in plan_corpus(spec)}
    missing = {r["video_id"] for r in rows} - plans.keys()
    if missing:
        raise SystemExit(f"--synth {' '.join(synth)} does not plan video {sorted(missing)[0]}: give the "
                         f"corpus's own videos, seconds, seed and test_share")
    return np.array([plans[r["video_id"]].event is not None
                     and plans[r["video_id"]].event[0] <= r["frame_index"] < plans[r["video_id"]].event[1]
                     for r in rows])


def probe_net() -> nn.Module:
    """3 conv layers (32, 64, 64 channels, 3x3), global max pooling, one logit."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 1))


def category_aucs(test: list[dict], labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC per anomaly category: that category's rows against every Normal video's rows."""
    video_labels = np.array([r["video_label"] for r in test])
    out = {}
    for category in sorted(set(video_labels) - {NORMAL_LABEL}):
        chosen = np.isin(video_labels, [category, NORMAL_LABEL])
        if len(set(labels[chosen])) == 2:
            out[category] = roc_auc_score(labels[chosen], scores[chosen])
    return out


def train_probe(tag: str, x: torch.Tensor, y: np.ndarray, test_x: torch.Tensor, test: list[dict],
                test_y: np.ndarray, epochs: int, seed: int) -> None:
    """Train :func:`probe_net` on (x, y) with Adam (lr 1e-3, batches of 32); print test AUCs per epoch."""
    torch.manual_seed(seed)
    net, targets = probe_net(), torch.from_numpy(y.astype(np.float32))
    optimizer, start = torch.optim.Adam(net.parameters(), lr=1e-3), time.time()
    for epoch in range(1, epochs + 1):
        net.train()
        for batch in torch.randperm(len(x)).split(32):
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[batch]).squeeze(1), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            scores = torch.cat([net(part).squeeze(1) for part in test_x.split(256)]).numpy()
        per_category = " ".join(f"{c} {a:.3f}" for c, a in category_aucs(test, test_y, scores).items())
        print(f"{tag:6s} epoch {epoch:2d}: test AUC {roc_auc_score(test_y, scores):.3f} | {per_category} "
              f"| {time.time() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder whose benchmarks are built")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synth", nargs="+", metavar="N",
                        help="VIDEOS SECONDS SEED TEST_SHARE [CAMERAS] of a generated corpus (true labels)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = read_rows(args.run)
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    if not train or not test:
        raise SystemExit(f"{args.run}: the probe needs train and test rows, got {len(train)} and {len(test)}")
    x, test_x = pixels(train), pixels(test)
    given, test_y = np.array([r["anomalous"] for r in train]), np.array([r["anomalous"] for r in test])
    print(f"{len(train)} train rows ({given.mean():.1%} labelled anomalous), {len(test)} test rows")
    train_probe("given", x, given, test_x, test, test_y, args.epochs, args.seed)
    if args.synth:
        truth = true_labels(train, args.synth)
        weak = np.array([r["pseudo"] for r in train])  # rows labelled by the scorer
        print(f"pseudo-labels on anomalous training videos: precision {truth[given & weak].mean():.3f}, "
              f"recall {given[truth & weak].mean():.3f} ({weak.sum()} rows)")
        train_probe("truth", x, truth, test_x, test, test_y, args.epochs, args.seed)


if __name__ == "__main__":
    main()
