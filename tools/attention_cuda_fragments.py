"""Checks, without a GPU, the fragment bookkeeping of the tensor-core attention kernels
(kernels/attention_mma.cuh, attention_forward.cu, attention_backward.cu): a numpy model of the
PTX semantics of ldmatrix.x4 (plain and .trans) and mma.sync.m16n8k16.row.col (fragment layouts as
the PTX ISA tables give them), fed the kernels' ldmatrix lane addresses (a_frag_addr, b_frag_addr,
bt_frag_addr, the dS^T address of the dQ product), the accumulator -> A-fragment repacking and the
dS^T shared-memory store. Every product the tensor-core kernels form is compared with numpy:
S = Q K^T, O = P V, S^T = K Q^T, dK = dS^T Q, dQ = dS K.

    python3 tools/attention_cuda_fragments.py      (prints the max error of each; all ~1e-14)
"""
import numpy as np

rng = np.random.default_rng(0)


def report(what, err):
    print(f"{what:24s} max error {err:.1e}")
    assert err < 1e-10, what


def ldsm_x4(smem, addr_of_lane, trans=False):
    """smem: 2-D array; addr_of_lane(l) -> (row, col) start of the 8-element row lane l points at.
    Returns regs[lane][i] = (lo, hi) element pair."""
    regs = [[None]*4 for _ in range(32)]
    for i in range(4):
        rows = [addr_of_lane(8*i + r) for r in range(8)]
        mat = np.array([[smem[r0, c0 + c] for c in range(8)] for (r0, c0) in rows])  # 8x8 matrix i
        for l in range(32):
            g, t = l // 4, l % 4
            if not trans:
                regs[l][i] = (mat[g, 2*t], mat[g, 2*t+1])
            else:
                regs[l][i] = (mat[2*t, g], mat[2*t+1, g])
    return regs

def mma(Cfr, Afr, B0, B1):
    """Cfr[l] = [c0..c3]; Afr[l] = 4 pairs; B0[l], B1[l] pairs. Rebuild the matrices from fragments per PTX."""
    A = np.zeros((16, 16)); B = np.zeros((16, 8)); C = np.zeros((16, 8))
    for l in range(32):
        g, t = l // 4, l % 4
        a = Afr[l]
        A[g, 2*t:2*t+2] = a[0]; A[g+8, 2*t:2*t+2] = a[1]; A[g, 2*t+8:2*t+10] = a[2]; A[g+8, 2*t+8:2*t+10] = a[3]
        B[2*t:2*t+2, g] = B0[l]; B[2*t+8:2*t+10, g] = B1[l]
        C[g, 2*t:2*t+2] = Cfr[l][0:2]; C[g+8, 2*t:2*t+2] = Cfr[l][2:4]
    D = C + A @ B
    for l in range(32):
        g, t = l // 4, l % 4
        Cfr[l][0:2] = D[g, 2*t:2*t+2]; Cfr[l][2:4] = D[g+8, 2*t:2*t+2]

def acc_to_matrix(acc, nt_count):  # acc[l][nt][4] -> 16 x 8*nt
    M = np.zeros((16, 8*nt_count))
    for l in range(32):
        g, t = l // 4, l % 4
        for nt in range(nt_count):
            M[g, nt*8+2*t:nt*8+2*t+2] = acc[l][nt][0:2]; M[g+8, nt*8+2*t:nt*8+2*t+2] = acc[l][nt][2:4]
    return M

# address formulas, transcribed from attention_mma.cuh
def a_frag_addr(r0, c0): return lambda lane: (r0 + (lane & 15), c0 + (lane >> 4) * 8)
def b_frag_addr(n0, k0): return lambda lane: (n0 + (lane & 7) + (lane >> 4) * 8, k0 + ((lane >> 3) & 1) * 8)
def bt_frag_addr(k0, n0): return lambda lane: (k0 + (lane & 7) + ((lane >> 3) & 1) * 8, n0 + (lane >> 4) * 8)

def mma_a_smem_b_nmajor(KC, NT, sa, r0, s):  # acc += sa[r0:r0+16, :KC*16] @ s[:NT*8, :KC*16]^T
    acc = [[[0.0]*4 for _ in range(NT)] for _ in range(32)]
    for kc in range(KC):
        a = ldsm_x4(sa, a_frag_addr(r0, kc*16))
        for np_ in range(NT // 2):
            b = ldsm_x4(s, b_frag_addr(np_*16, kc*16))
            mma([acc[l][2*np_] for l in range(32)], a, [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
            mma([acc[l][2*np_+1] for l in range(32)], a, [b[l][2] for l in range(32)], [b[l][3] for l in range(32)])
    return acc

def acc_to_a(acc, NT):  # per lane: a[kc][0..3] pairs
    return [[[(acc[l][2*kc][0], acc[l][2*kc][1]), (acc[l][2*kc][2], acc[l][2*kc][3]),
              (acc[l][2*kc+1][0], acc[l][2*kc+1][1]), (acc[l][2*kc+1][2], acc[l][2*kc+1][3])] for kc in range(NT//2)]
            for l in range(32)]

def mma_a_reg_b_kmajor(acc, a, KC, NT, s, n0):  # acc += A(16 x KC*16) @ s[:KC*16, n0:n0+NT*8]
    for kc in range(KC):
        for np_ in range(NT // 2):
            b = ldsm_x4(s, bt_frag_addr(kc*16, n0 + np_*16), trans=True)
            af = [a[l][kc] for l in range(32)]
            mma([acc[l][2*np_] for l in range(32)], af, [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
            mma([acc[l][2*np_+1] for l in range(32)], af, [b[l][2] for l in range(32)], [b[l][3] for l in range(32)])

D, BC, BR = 32, 32, 32
# 1. forward S = Q K^T for one warp (rows 16..31 of sQ), Q fragments via a_frag_addr
sQ = rng.standard_normal((BR, D)); sK = rng.standard_normal((BC, D)); sV = rng.standard_normal((BC, D))
warp = 1
s = mma_a_smem_b_nmajor(D//16, BC//8, sQ, warp*16, sK)
S = acc_to_matrix(s, BC//8)
report("S = Q K^T", np.abs(S - sQ[16:32] @ sK.T).max())
# 2. O += P V with P from the S accumulators
o = [[[0.0]*4 for _ in range(D//8)] for _ in range(32)]
mma_a_reg_b_kmajor(o, acc_to_a(s, BC//8), BC//16, D//8, sV, 0)
report("O = P V", np.abs(acc_to_matrix(o, D//8) - S @ sV).max())
# 3. backward: S^T = K Q^T for warp's keys, dS^T stored to smem as in the kernel, dQ via ldsm.trans
W = 2; BCb = 16*W
sKb = rng.standard_normal((BCb, D)); sQb = rng.standard_normal((BR, D))
LDS = BR + 8
sdS = np.full((BCb, LDS), np.nan)
DS_T = np.zeros((BCb, BR))
for w in range(W):
    st = mma_a_smem_b_nmajor(D//16, BR//8, sKb, w*16, sQb)
    M = acc_to_matrix(st, BR//8); DS_T[w*16:w*16+16] = M
    pf = acc_to_a(st, BR//8)
    for l in range(32):
        g, t = l // 4, l % 4
        for nt in range(BR//8):
            key = w*16 + g
            lo, hi = pf[l][nt//2][(nt & 1)*2]; sdS[key, nt*8+2*t:nt*8+2*t+2] = (lo, hi)
            lo, hi = pf[l][nt//2][(nt & 1)*2+1]; sdS[key+8, nt*8+2*t:nt*8+2*t+2] = (lo, hi)
report("S^T = K Q^T", np.abs(DS_T - sKb @ sQb.T).max())
report("dS^T in shared memory", np.abs(sdS[:, :BR] - DS_T).max())
# dK-like product: dS^T (regs) @ Q (k-major, trans) for warp 0
dk = [[[0.0]*4 for _ in range(D//8)] for _ in range(32)]
st0 = mma_a_smem_b_nmajor(D//16, BR//8, sKb, 0, sQb)
mma_a_reg_b_kmajor(dk, acc_to_a(st0, BR//8), BR//16, D//8, sQb, 0)
report("dK = dS^T Q", np.abs(acc_to_matrix(dk, D//8) - DS_T[:16] @ sQb).max())
# dQ units: rows rt*16.., cols cg*32.. ; A from sdS via ldsm.trans with the kernel's address
dQ = np.zeros((BR, D))
for u in range((BR//16) * (D//32)):
    rt, cg = u // (D//32), u % (D//32)
    acc = [[[0.0]*4 for _ in range(4)] for _ in range(32)]
    for kc in range(BCb // 16):
        a = ldsm_x4(sdS, lambda lane: (kc*16 + (lane & 7) + (lane >> 4)*8, rt*16 + ((lane >> 3) & 1)*8), trans=True)
        for np_ in range(2):
            b = ldsm_x4(sKb, bt_frag_addr(kc*16, cg*32 + np_*16), trans=True)
            mma([acc[l][2*np_] for l in range(32)], a, [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
            mma([acc[l][2*np_+1] for l in range(32)], a, [b[l][2] for l in range(32)], [b[l][3] for l in range(32)])
    dQ[rt*16:rt*16+16, cg*32:cg*32+32] = acc_to_matrix(acc, 4)
report("dQ = dS K", np.abs(dQ - DS_T.T @ sKb).max())
# output store: orow[nt*4 + t] (uint32 pairs) = cols nt*8 + 2t
assert all((nt*4 + t)*2 == nt*8 + 2*t for nt in range(16) for t in range(4)), "output store index"
print("all fragment layouts agree with numpy")
