"""``ray job submit`` entrypoint for the ``evaluate`` stage (add --ablate sampling for the sampling ablation).

    ray job submit --working-dir . -- python jobs/evaluate.py --config configs/cluster.yaml run=s3://BUCKET/runs/ucf
"""

import sys

from dualvad.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
