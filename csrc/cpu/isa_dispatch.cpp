// The CPU kernels' entry points: pyfastdl::cpu::<kernel><T> calls the copy of its family's file
// compiled for the instruction set in use (cpu/isa.h). One line per family: the dispatch table.
#include "cpu/attention.h"
#include "cpu/conv.h"
#include "cpu/isa.h"
#include "cpu/lstm.h"
#include "cpu/pool.h"

PYFASTDL_ISA_DISPATCH(PYFASTDL_CONV_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_POOL_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_POOL_REFERENCE_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_LSTM_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_LSTM_REFERENCE_KERNELS)
PYFASTDL_ISA_DISPATCH(PYFASTDL_ATTENTION_KERNELS)
