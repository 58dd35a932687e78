"""pyfastdl: the classic deep-learning models from LeNet to Transformer, on hand-written C++ and
CUDA kernels (convolution, pooling, LSTM, attention) with a small PyTorch-style autograd."""

__version__ = "0.1.0"

from .backend import cuda_is_available, get_num_threads, set_num_threads  # noqa: E402
