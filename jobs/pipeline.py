"""``ray job submit`` entrypoint for the whole pipeline: every stage in order, finished ones skipped, one
summary line per stage (``dualvad pipeline``).

    ray job submit --working-dir . -- python jobs/pipeline.py --config configs/cluster.yaml \
        corpus=s3://BUCKET/ucf-crime run=s3://BUCKET/runs/ucf
"""

import sys

from dualvad.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
