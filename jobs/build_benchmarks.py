"""``ray job submit`` entrypoint for the ``build-benchmarks`` stage.

    ray job submit --working-dir . -- python jobs/build_benchmarks.py --config configs/cluster.yaml run=s3://BUCKET/runs/ucf
"""

import sys

from dualvad.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-benchmarks", *sys.argv[1:]]))
