"""``ray job submit`` entrypoint for the ``sample`` stage.

    ray job submit --working-dir . -- python jobs/sample.py --config configs/cluster.yaml run=s3://BUCKET/runs/ucf
"""

import sys

from dualvad.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
