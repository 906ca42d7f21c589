"""The one place dualvad reaches into DeepSpeed's private state, behind a version check.

DeepSpeed's comm backend JIT-compiles its shared-memory CPU collective (``deepspeed_shm_comm``) whenever
it starts on a machine whose accelerator is the CPU, if ``deepspeed.ops.__compatible_ops__`` marks the op
compatible; that needs a C++ compiler and ninja, and the op only serves inference all-reduce (ZeRO
training on CPU communicates through gloo). DeepSpeed 0.19 offers no setting or environment variable to
skip it, so :func:`skip_shm_comm_build` marks the op incompatible in this process, and only on the
DeepSpeed versions in :data:`TESTED_VERSIONS`; on any other version it leaves DeepSpeed alone (the op then
compiles) and logs why. ``tests/train/test_deepspeed_engine.py`` fails when the installed DeepSpeed is not
a tested version or no longer reads that switch.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: DeepSpeed ``major.minor`` versions whose ``deepspeed.comm.torch.build_shm_op`` reads the switch below.
TESTED_VERSIONS = ("0.19",)
#: ``ShareMemCommBuilder.NAME``: the op's key in ``deepspeed.ops.__compatible_ops__``.
SHM_COMM_OP = "deepspeed_shm_comm"


def deepspeed_minor_version() -> str:
    """The installed DeepSpeed's ``major.minor`` (e.g. ``"0.19"``)."""
    import deepspeed

    return ".".join(deepspeed.__version__.split(".")[:2])


def skip_shm_comm_build() -> bool:
    """Keep DeepSpeed from compiling its shared-memory CPU collective in this process; call it before
    ``deepspeed.initialize``. Returns whether the switch was set (False on an untested DeepSpeed)."""
    import deepspeed

    version = deepspeed_minor_version()
    if version not in TESTED_VERSIONS:
        log.warning("DeepSpeed %s is not one of the tested versions %s: leaving its shared-memory op alone "
                    "(it may JIT-compile, which needs a C++ compiler and ninja); re-check "
                    "dualvad.train.deepspeed_compat against this version", deepspeed.__version__,
                    TESTED_VERSIONS)
        return False
    deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False
    return True
