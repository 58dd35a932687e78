// The CPU kernels' entry points: pyfastdl::cpu::<kernel><T> calls the copy of its family's file
// compiled for the instruction set in use (cpu/isa.h). One line per family: the dispatch table.
#include "cpu/attention.h"
#include "cpu/conv.h"
#include "cpu/isa.h"
#include "cpu/lstm.h"
#include "cpu/norm.h"
#include "cpu/optim.h"
#include "cpu/pool.h"
#include "cpu/softmax.h"

PYFASTDL_ISA_DISPATCH(PYFASTDL_CONV_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_CONV_WINOGRAD_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_POOL_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_POOL_REFERENCE_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_LSTM_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_LSTM_REFERENCE_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_ATTENTION_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_NORM_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_SOFTMAX_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_OPTIM_KERNELS)
