"""``ray job submit`` entrypoint for the ``finetune`` stage.

    ray job submit --working-dir . -- python jobs/finetune.py --config configs/cluster.yaml run=s3://BUCKET/runs/ucf
"""

import sys

from dualvad.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
