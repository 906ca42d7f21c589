"""``ray job submit`` entrypoint for the ``train-scorer`` stage.

    ray job submit --working-dir . -- python jobs/train_scorer.py --config configs/cluster.yaml run=s3://BUCKET/runs/ucf
"""

import sys

from dualvad.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-scorer", *sys.argv[1:]]))
