"""Experiment of 2026-12-07 (docs/decisions.md, issue 28 item 4), not part of dualvad.

Append PCA-reduced, video-relative appearance embeddings to a run's motion features; train and score seeds.

    python combine.py FOLDER OUT.npz TAG 16 concat 0,1,2 [key=value ...]

FOLDER holds `corpus/` and `run/` (an ingested run, e.g. bench/out/real_footage/<setting>).
"""
import sys, os, time
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
ROOT = Path(__file__).resolve().parents[3]  # the repository
sys.path.insert(0, str(ROOT / "bench")); sys.path.insert(0, str(ROOT))
from common import frame_aucs, print_seed_table, run_video_auc
from dualvad import schema as S
from dualvad.scorer.features import segment_median
from sklearn.decomposition import PCA

def build(src_run: Path, npz: str, dst_run: Path, dims: int, mode: str):
    emb = {k.replace("|", "/"): v for k, v in np.load(npz).items()}
    rel = {k: v - segment_median(v) for k, v in emb.items()}  # (K, 1280) relative to the video
    src = src_run / "segments"
    train_ids = set()
    for p in src.rglob("*.parquet"):
        t = pq.read_table(p)
        if S.FEATURE in t.column_names:
            for v, s in zip(t[S.VIDEO_ID].to_pylist(), t[S.SPLIT].to_pylist()):
                if s == "train": train_ids.add(v)
    pca = PCA(dims, random_state=0).fit(np.concatenate([rel[v] for v in sorted(train_ids)]))
    red = {k: pca.transform(v).astype(np.float32) for k, v in rel.items()}
    for path in sorted(src.rglob("*")):
        out = dst_run / "segments" / path.relative_to(src)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True); continue
        out.parent.mkdir(parents=True, exist_ok=True)
        t = pq.read_table(path) if path.suffix == ".parquet" else None
        if t is None or S.FEATURE not in t.column_names:
            out.write_bytes(path.read_bytes()); continue
        motion = np.stack(t[S.FEATURE].to_numpy(zero_copy_only=False)).astype(np.float32)
        app = np.stack([red[v][i] for v, i in zip(t[S.VIDEO_ID].to_pylist(), t[S.SEGMENT_INDEX].to_pylist())])
        feats = np.concatenate([motion, app], 1) if mode == "concat" else app
        field = pa.field(S.FEATURE, pa.list_(pa.float32()))
        col = pa.array(list(feats), type=t.schema.field(S.FEATURE).type)
        pq.write_table(t.set_column(t.schema.get_field_index(S.FEATURE), t.schema.field(S.FEATURE), col), out)

def main():
    folder, npz, tag, dims, mode, seeds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
    extra = sys.argv[7:]
    import ray
    from dualvad.config import load_config
    from dualvad.pipeline.runtime import ensure_ray
    from dualvad.pipeline.score import run_score
    from dualvad.train.train_scorer import run_train_scorer
    corpus = folder / "corpus"; base = folder / f"{tag}-segments"
    if not (base / "segments").exists():
        build(folder / "run", npz, base, dims, mode)
    rows = []
    for seed in [int(s) for s in seeds.split(",")]:
        t0 = time.perf_counter()
        run = folder / f"{tag}-seed{seed}"; run.mkdir(exist_ok=True)
        if not (run / "segments").exists(): os.symlink(base / "segments", run / "segments")
        c = load_config(None, [f"corpus={corpus}", f"run={run}", "ray.num_cpus=1", f"scorer.seed={seed}", *extra])
        ensure_ray(c.ray); ray.data.DataContext.get_current().enable_progress_bars = False
        print(run_train_scorer(c)); run_score(c)
        o, k = frame_aucs(run, corpus)
        rows.append((seed, o, k, run_video_auc(run, corpus), time.perf_counter() - t0))
    print(tag, dims, mode, extra); print_seed_table(rows)

main()
