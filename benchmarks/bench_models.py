"""End-to-end training steps against PyTorch: a thin entry to :mod:`pyfastdl.bench_models` (the code
ships inside the package so that ``pyfastdl bench models`` works after ``pip install``).

    PYTHONPATH=$PWD python benchmarks/bench_models.py [MODEL ...] [--rounds N] [--save [DIR]]

Not a pytest-benchmark suite: each case needs its own processes (peak memory) and a busy neighbour
process, which the module runs itself. ``tests/test_bench_models.py`` runs its machinery on LeNet.
"""

import sys

from pyfastdl.bench_models import main, parser

if __name__ == "__main__":
    sys.exit(main(parser().parse_args()))
