// Shape arithmetic and validation for scaled dot-product attention, shared by the CPU kernels, the
// CUDA launchers and the bindings (plain C++: nvcc includes it too).
//
//   q (B, H, L, E)   k (B, H, S, E)   v (B, H, S, Ev)   ->   out (B, H, L, Ev),  lse (B, H, L)
//   out[b,h,i,:] = sum_j softmax_j(scale * q_i . k_j + mask[b,h,i,j]) v_j
//
// Masks follow torch.nn.functional.scaled_dot_product_attention:
//   * boolean: True = this (query, key) pair takes part in attention, False = masked out;
//   * additive: a float (same dtype as q) added to the scaled scores (-inf masks out);
//   * is_causal: the top-left aligned lower triangle, key j is seen by query i iff j <= i (also when
//     L != S), and it cannot be combined with a mask (as in torch).
// A mask of any rank <= 4 whose shape broadcasts to (B, H, L, S) is read in place through
// `mask_stride` (element strides over B, H, L, S of the C-contiguous mask, 0 along broadcast
// dimensions), so a (B, 1, 1, S) key-padding mask is never materialised to (B, H, L, S).
//
// Fully masked rows (no key takes part): out = 0 and every gradient through the row is 0, which is
// what torch 2.13's CPU kernels return. Such a row stores lse = +inf, so the backward's recomputed
// probabilities exp(s - lse) are exactly 0 there without a special case.
//
// lse[b,h,i] = log sum_j exp(scale * q_i . k_j + mask) is saved by the forward for the backward.
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>

#include "common/check.h"

namespace pyfastdl {

enum class MaskKind { none, boolean, additive };

struct AttentionArgs {
  int64_t B = 0, H = 0;  // batch, heads
  int64_t L = 0, S = 0;  // query length, key/value length
  int64_t E = 0, Ev = 0; // q/k feature size, v feature size
  double scale = 1.0;    // multiplies q . k (default 1/sqrt(E))
  bool causal = false;
  MaskKind mask = MaskKind::none;
  Shape mask_shape;                      // the mask array's own shape (empty when mask == none)
  int64_t mask_stride[4] = {0, 0, 0, 0}; // element strides over (B, H, L, S); 0 = broadcast

  Shape q_shape() const { return {B, H, L, E}; }
  Shape k_shape() const { return {B, H, S, E}; }
  Shape v_shape() const { return {B, H, S, Ev}; }
  Shape out_shape() const { return {B, H, L, Ev}; }
  Shape lse_shape() const { return {B, H, L}; }

  // Offset of mask[b, h, i, 0] in the mask array; add j * mask_stride[3] for key j.
  int64_t mask_offset(int64_t b, int64_t h, int64_t i) const {
    return b * mask_stride[0] + h * mask_stride[1] + i * mask_stride[2];
  }
  // Number of keys query i can see: keys [0, visible_keys(i)) (all S without a causal mask).
  int64_t visible_keys(int64_t i) const { return causal ? (i + 1 < S ? i + 1 : S) : S; }
};

// Where one (B, H, rows, features) operand's rows are: element strides over batch, head and row;
// the features of a row are contiguous. A C-contiguous array has {H * rows * f, rows * f, f}; the
// heads of a (B, rows, H, f) array (torch's and nn.MultiheadAttention's layout, viewed with its
// heads moved forward, no copy) have {rows * H * f, f, H * f}.
struct HeadStrides {
  int64_t b = 0, h = 0, r = 0;
  int64_t head(int64_t batch, int64_t head_index) const { return batch * b + head_index * h; }
};

inline HeadStrides contiguous_heads(int64_t H, int64_t rows, int64_t features) {
  return {H * rows * features, rows * features, features};
}

// The strides of every operand of a call (the CPU kernels read and write views in place; the CUDA
// kernels take C-contiguous arrays only). lse is always C-contiguous (B, H, L).
struct SdpaLayout {
  HeadStrides q, k, v, out, grad_out, grad_q, grad_k, grad_v;
};

inline SdpaLayout contiguous_layout(const AttentionArgs& a) {
  const HeadStrides q = contiguous_heads(a.H, a.L, a.E), k = contiguous_heads(a.H, a.S, a.E),
                    v = contiguous_heads(a.H, a.S, a.Ev), out = contiguous_heads(a.H, a.L, a.Ev);
  return {q, k, v, out, out, q, k, v};
}

inline const char* mask_kind_name(MaskKind k) {
  return k == MaskKind::boolean ? "bool" : k == MaskKind::additive ? "additive" : "none";
}

// Validates the shapes and options and computes everything the kernels need. `mask_shape` is
// ignored when mask == MaskKind::none; `scale` defaults to 1/sqrt(E).
inline AttentionArgs make_attention_args(const Shape& q, const Shape& k, const Shape& v, MaskKind mask,
                                         const Shape& mask_shape, bool is_causal, std::optional<double> scale) {
  const char* op = "scaled_dot_product_attention";
  check_rank(op, "query", q, 4);
  check_rank(op, "key", k, 4);
  check_rank(op, "value", v, 4);
  check_nonempty(op, "query", q);
  check_nonempty(op, "key", k);
  check_nonempty(op, "value", v);
  check(k[0] == q[0] && k[1] == q[1], op, ": key's (batch, heads) must match query's, got query ", shape_str(q),
        " and key ", shape_str(k));
  check(v[0] == q[0] && v[1] == q[1], op, ": value's (batch, heads) must match query's, got query ", shape_str(q),
        " and value ", shape_str(v));
  check(k[3] == q[3], op, ": key's feature size must equal query's (E), got query ", shape_str(q), " and key ",
        shape_str(k));
  check(v[2] == k[2], op, ": value's sequence length must equal key's (S), got key ", shape_str(k), " and value ",
        shape_str(v));
  AttentionArgs a;
  a.B = q[0];
  a.H = q[1];
  a.L = q[2];
  a.S = k[2];
  a.E = q[3];
  a.Ev = v[3];
  a.scale = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(a.E));
  check(std::isfinite(a.scale), op, ": scale must be finite, got ", a.scale);
  a.causal = is_causal;
  a.mask = mask;
  if (mask == MaskKind::none) return a;

  check(!is_causal, op, ": attn_mask and is_causal cannot both be set (fold the causal mask into attn_mask)");
  check(mask_shape.size() <= 4, op, ": attn_mask must have at most 4 dimensions, got shape ", shape_str(mask_shape));
  a.mask_shape = mask_shape;
  const Shape full = {a.B, a.H, a.L, a.S};
  const size_t lead = 4 - mask_shape.size();  // missing leading dimensions broadcast
  int64_t stride = 1;
  for (int d = 3; d >= static_cast<int>(lead); --d) {
    int64_t n = mask_shape[d - lead];
    check(n == full[d] || n == 1, op, ": attn_mask of shape ", shape_str(mask_shape),
          " does not broadcast to (batch, heads, L, S) = ", shape_str(full));
    a.mask_stride[d] = n == 1 ? 0 : stride;
    stride *= n;
  }
  return a;
}

}  // namespace pyfastdl
