// Convolution on the GPU: the entry points, which pick the kernels for each call, one file each.
//
// The three products (per group g; G groups, Cg = C/G and Kg = K/G channels per group):
//   forward          y = conv2d(x, w) + bias
//   input gradient   dx from dy and w (also conv_transpose2d's forward)
//   weight gradient  dw from x and dy
// Each costs 2*N*K*P*Q*Cg*R*S flops. The fewest bytes are one read of each operand and one write of
// the result, so every layer of a real network is compute-bound: the whole game is keeping the
// FMA units (float32) or the tensor cores (float16/bfloat16) fed.
//
// Variants (selected by ConvVariant, by name in pyfastdl.kernels and the benchmarks):
//   reference  conv_reference.cu: one thread per output element, a direct loop over its sum, float32
//              accumulation; memory-bound, ~1-3% of peak. Kept so a reader can see what tiling buys.
//   fast       implicit GEMMs: the im2col matrix is never built, each tile of it is gathered from
//              the activations straight into shared memory.
//                conv_plan.cu     the prologue: repacks the operands NCHW -> NHWC (channels padded to
//                                 16 bytes) into the workspace, and chooses split-K
//                conv_gemm.cuh    the engine: 128x128 block tiles, a cp.async pipeline, the math on
//                                 FFMA (float32) or mma.sync tensor cores (float16/bfloat16)
//                conv_gemm.cu     forward and input gradient (act_gemm), bias and NCHW in the epilogue
//                conv_wgrad.cu    weight gradient (wgrad_gemm), always split-K, reduced deterministically
// What limits each is said in its file.
#include "conv_common.cuh"

namespace pyfastdl::cuda {
namespace {

const char* op_name(ConvOp op) {
  return op == ConvOp::forward ? "conv2d_forward"
         : op == ConvOp::backward_input ? "conv2d_backward_input"
                                        : "conv2d_backward_weight";
}

// The three entry points differ only in their operands: in0, in1 are x and w (forward), dy and w
// (input gradient), x and dy (weight gradient); bias is the forward's (or null).
void conv2d_cuda(ConvOp op, const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* in0, const void* in1,
                 const void* bias, void* out, void* workspace, cudaStream_t st) {
  const char* name = op_name(op);
  conv::check_int32(name, "the output", a.N * a.K * a.P * a.Q);
  conv::check_int32(name, "the input", a.N * a.C * a.H * a.W);
  if (v == ConvVariant::reference) return conv::reference(op, a, dt, in0, in1, bias, out, st);
  if (op == ConvOp::backward_weight) return conv::wgrad_fast(a, dt, in0, in1, out, workspace, st);
  conv::act_gemm_fast(name, a, dt, op == ConvOp::backward_input, in0, in1, bias, out, workspace, st);
}

}  // namespace

std::size_t conv2d_workspace_bytes(const Conv2dArgs& a, ConvOp op, ConvDType dt, ConvVariant v) {
  return v == ConvVariant::reference ? 0 : conv::make_plan(a, op, conv::elem_size(dt)).bytes;
}

void conv2d_forward_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* x, const void* w,
                         const void* bias, void* y, void* workspace, cudaStream_t st) {
  conv2d_cuda(ConvOp::forward, a, dt, v, x, w, bias, y, workspace, st);
}

void conv2d_backward_input_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* dy, const void* w,
                                void* dx, void* workspace, cudaStream_t st) {
  conv2d_cuda(ConvOp::backward_input, a, dt, v, dy, w, nullptr, dx, workspace, st);
}

void conv2d_backward_weight_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* x, const void* dy,
                                 void* dw, void* workspace, cudaStream_t st) {
  conv2d_cuda(ConvOp::backward_weight, a, dt, v, x, dy, nullptr, dw, workspace, st);
}

}  // namespace pyfastdl::cuda
