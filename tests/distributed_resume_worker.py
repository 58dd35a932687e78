"""Run by tests/test_distributed.py under ``mpiexec -n 2``: ``pyfastdl train`` whose rank 1 alone
gets SIGINT after step STEP (so the ranks must agree to stop at the same step).

    python tests/distributed_resume_worker.py STEP pyfastdl-train-arguments...
"""

import functools
import os
import signal
import sys

import pyfastdl.train
from pyfastdl import distributed as dist
from pyfastdl.cli import main
from pyfastdl.train import fit


def signal_rank_1_at(step_number):
    def hook(step):
        if step == step_number and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGINT)
    return hook


if __name__ == "__main__":
    pyfastdl.train.fit = functools.partial(fit, on_step=signal_rank_1_at(int(sys.argv[1])))
    sys.exit(main(sys.argv[2:]))
