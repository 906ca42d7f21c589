"""``ray job submit`` entrypoint for the ingest stage.

    ray job submit --working-dir . -- python jobs/ingest.py --config configs/cluster.yaml \
        corpus=/data/ucf-crime run=s3://BUCKET/runs/ucf
"""

import sys

from dualvad.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
