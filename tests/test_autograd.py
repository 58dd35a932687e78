"""Tensor and autograd: every op's forward against numpy, every backward by gradcheck, and the
errors the autograd engine promises."""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl.testing import gradcheck


def leaf(rng, *shape, positive=False):
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return pf.tensor(a, requires_grad=True)


UNARY = {
    "exp": (lambda t: t.exp(), np.exp, False),
    "log": (lambda t: t.log(), np.log, True),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, True),
    "abs": (lambda t: t.abs(), np.abs, False),
    "tanh": (lambda t: t.tanh(), np.tanh, False),
    "sigmoid": (lambda t: t.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), False),
    "relu": (lambda t: t.relu(), lambda a: np.maximum(a, 0), False),
    "neg": (lambda t: -t, np.negative, False),
    "pow_scalar": (lambda t: t**3, lambda a: a**3, False),
    "pow_frac": (lambda t: t**0.5, lambda a: a**0.5, True),
    "clamp": (lambda t: t.clamp(-0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), False),
    "rsub": (lambda t: 2 - t, lambda a: 2 - a, False),
    "rdiv": (lambda t: 2 / t, lambda a: 2 / a, True),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, rng):
    op, ref, positive = UNARY[name]
    x = leaf(rng, 3, 5, positive=positive)
    np.testing.assert_allclose(op(x).data, ref(x.data), rtol=1e-12)
    assert gradcheck(op, (x,))


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "pow": (lambda a, b: a**b, np.power),
}


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3))])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_broadcast(name, shapes, rng):
    op, ref = BINARY[name]
    a, b = leaf(rng, *shapes[0], positive=True), leaf(rng, *shapes[1], positive=True)
    out = op(a, b)
    np.testing.assert_allclose(out.data, ref(a.data, b.data), rtol=1e-12)
    assert gradcheck(op, (a, b))
    out.sum().backward()  # gradients come back in each input's own shape
    assert a.grad.shape == a.shape and b.grad.shape == b.shape


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
                                   ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
                                   ((5, 1, 3), (5, 3, 4)), ((5, 3, 1), (1, 4)), ((5, 2, 3), (3, 1))])
def test_matmul(sa, sb, rng):
    a, b = leaf(rng, *sa), leaf(rng, *sb)
    np.testing.assert_allclose((a @ b).data, a.data @ b.data, rtol=1e-12)
    assert gradcheck(lambda x, y: x @ y, (a, b))


def test_matmul_shape_error(rng):
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\)"):
        leaf(rng, 3, 4) @ leaf(rng, 5, 2)


@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
@pytest.mark.parametrize("red", ["sum", "mean"])
def test_sum_mean(red, dim, keepdim, rng):
    x = leaf(rng, 3, 4, 2)
    out = getattr(x, red)(dim, keepdim)
    ref = getattr(np, red)(x.data, axis=dim, keepdims=keepdim)
    np.testing.assert_allclose(out.data, ref, rtol=1e-12)
    assert gradcheck(lambda t: getattr(t, red)(dim, keepdim), (x,))


@pytest.mark.parametrize("dim,keepdim", [(0, False), (1, True), (-1, False)])
@pytest.mark.parametrize("which", ["max", "min"])
def test_max_min_dim(which, dim, keepdim, rng):
    x = leaf(rng, 4, 5, 3)
    values, indices = getattr(x, which)(dim, keepdim)
    np.testing.assert_allclose(values.data, getattr(np, which)(x.data, axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.data, getattr(np, "arg" + which)(x.data, axis=dim, keepdims=keepdim))
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert gradcheck(lambda t: getattr(t, which)(dim, keepdim).values, (x,))


def test_max_full_ties_share_gradient():
    x = pf.tensor(np.array([1.0, 3.0, 3.0, 2.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad.data, [0, 0.5, 0.5, 0])
    y = leaf(np.random.default_rng(1), 3, 4)
    assert gradcheck(lambda t: t.min(), (y,))


SHAPE_OPS = {
    "reshape": lambda t: t.reshape(4, 6),
    "view": lambda t: t.view(-1),
    "transpose": lambda t: t.transpose(0, 2),
    "permute": lambda t: t.permute(2, 0, 1),
    "flatten": lambda t: t.flatten(1),
    "unsqueeze": lambda t: t.unsqueeze(1),
    "squeeze": lambda t: t.unsqueeze(0).squeeze(0),
    "expand": lambda t: t[:, :1, :].expand(2, 3, 4),
    "T": lambda t: t.T,
    "slice": lambda t: t[1:, ::2, -1],
    "int_index": lambda t: t[0, 1],
    "fancy_repeat": lambda t: t[[0, 1, 1, 0]],
    "bool_mask": lambda t: t[t.detach() > 0],
    "ellipsis": lambda t: t[..., None, 1],
    "var": lambda t: t.var(1),
    "masked_fill": lambda t: t.masked_fill(t.detach() > 0.5, 0.0),
}


@pytest.mark.parametrize("name", sorted(SHAPE_OPS))
def test_shape_and_indexing(name, rng):
    x = leaf(rng, 2, 3, 4)
    assert gradcheck(SHAPE_OPS[name], (x,))


def test_shape_results_match_numpy(rng):
    x = leaf(rng, 2, 3, 4)
    np.testing.assert_array_equal(x.permute(2, 0, 1).data, x.data.transpose(2, 0, 1))
    np.testing.assert_array_equal(x[[0, 1, 1]].data, x.data[[0, 1, 1]])
    np.testing.assert_array_equal(x.flatten(1).data, x.data.reshape(2, 12))
    np.testing.assert_allclose(x.var(1).data, x.data.var(1, ddof=1))


def test_cat_stack_where(rng):
    a, b, c = leaf(rng, 2, 3), leaf(rng, 2, 5), leaf(rng, 2, 3)
    np.testing.assert_array_equal(pf.cat([a, b], dim=1).data, np.concatenate([a.data, b.data], 1))
    np.testing.assert_array_equal(pf.stack([a, c], dim=1).data, np.stack([a.data, c.data], 1))
    assert gradcheck(lambda x, y: pf.cat([x, y, x], dim=-1), (a, b))
    assert gradcheck(lambda x, y: pf.stack([x, y], dim=2), (a, c))
    cond = pf.tensor(rng.standard_normal((2, 3)) > 0)
    np.testing.assert_array_equal(pf.where(cond, a, c).data, np.where(cond.data, a.data, c.data))
    assert gradcheck(lambda x, y: pf.where(cond, x, y), (a, c))
    assert gradcheck(lambda x: pf.where(cond, x, 0.0), (a,))


def test_cat_and_stack_errors(rng):
    with pytest.raises(ValueError, match="cat: sizes must match"):
        pf.cat([leaf(rng, 2, 3), leaf(rng, 3, 3)], dim=1)
    with pytest.raises(ValueError, match="stack: all tensors must have the same shape"):
        pf.stack([leaf(rng, 2, 3), leaf(rng, 2, 4)])
    with pytest.raises(ValueError, match="non-empty"):
        pf.cat([])


def test_chain_rule_and_accumulation(rng):
    x = leaf(rng, 4)
    y = (x * x).sum() + (x * 3).sum()  # x used twice: gradients add
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 3)
    (x * 2).sum().backward()  # a second graph accumulates into .grad, as torch does
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 5)


def test_to_dtype_is_differentiable(rng):
    x = leaf(rng, 3)
    y = x.to("float32")
    assert y.dtype == np.float32 and y.requires_grad
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.data, 2)


def test_detach_and_no_grad(rng):
    x = leaf(rng, 3)
    assert not x.detach().requires_grad
    with pf.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf

    @pf.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    assert pf.is_grad_enabled()


def test_backward_with_gradient_argument(rng):
    x = leaf(rng, 2, 3)
    y = x * 3
    g = rng.standard_normal((2, 3))
    y.backward(pf.tensor(g))
    np.testing.assert_allclose(x.grad.data, 3 * g)


def test_python_numbers_take_tensor_dtype(rng):
    x = pf.tensor(rng.standard_normal(3).astype(np.float32))
    assert (x * 2.5).dtype == np.float32 and (1 - x).dtype == np.float32
    assert pf.tensor([1.5, 2.0]).dtype == np.float32
    assert pf.tensor([1, 2]).dtype == np.int64


# ---- errors the engine promises --------------------------------------------------------------


def test_mixed_dtypes_raise(rng):
    a = pf.tensor(rng.standard_normal(3).astype(np.float32))
    b = pf.tensor(rng.standard_normal(3))
    with pytest.raises(TypeError, match="same dtype, found float32 and float64"):
        a + b


def test_backward_on_non_scalar_needs_gradient(rng):
    x = leaf(rng, 2, 3)
    with pytest.raises(RuntimeError, match=r"only for scalar outputs; this tensor has shape \(2, 3\)"):
        (x * 2).backward()


def test_second_backward_through_freed_graph(rng):
    x = leaf(rng, 3)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    z = (x.exp() * x).sum()
    z.backward(retain_graph=True)
    z.backward()  # allowed once retained


def test_inplace_change_to_saved_tensor(rng):
    w = leaf(rng, 3)
    x = pf.tensor(rng.standard_normal(3))
    y = (w * x).sum()  # saves x
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation.*version 1; expected version 0"):
        y.backward()


def test_inplace_on_tensor_requiring_grad(rng):
    w = leaf(rng, 3)
    with pytest.raises(RuntimeError, match="in-place operation on a leaf tensor that requires grad"):
        w.mul_(2)
    with pf.no_grad():
        w.mul_(2)  # optimizer-style updates are fine without a graph
    assert w._version == 1


def test_backward_without_graph(rng):
    with pytest.raises(RuntimeError, match="does not require grad"):
        pf.tensor(rng.standard_normal(2)).sum().backward()


def test_cuda_unavailable_is_explained(rng):
    if pf.cuda_is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="device 'cuda' is not available"):
        pf.tensor([1.0]).to("cuda")


def test_bad_operands(rng):
    x = leaf(rng, 3)
    with pytest.raises(TypeError, match="expected a Tensor or a Python number, got ndarray"):
        x + np.ones(3)
    with pytest.raises(ValueError, match="unknown device"):
        pf.tensor([1.0], device="tpu")
    for error in (TypeError, RuntimeError):  # a TypeError naming the argument; torch's RuntimeError
        with pytest.raises(error, match=r"^Tensor: only floating-point tensors can require gradients \(requires_grad"
                                        r"=True\), got dtype int64"):
            pf.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="^Parameter: only floating-point tensors can require gradients"):
        pf.nn.Parameter(pf.tensor([1, 2]))


def test_gradcheck_catches_a_wrong_backward(rng):
    class Wrong(pf.Function):
        @staticmethod
        def forward(ctx, a):
            return a * a

        @staticmethod
        def backward(ctx, g):
            return (g,)  # should be 2 a g

    with pytest.raises(AssertionError, match="gradient of input 0"):
        gradcheck(lambda t: Wrong.apply(t), (leaf(rng, 3),))
    with pytest.raises(ValueError, match="need float64"):
        gradcheck(lambda t: t * 2, (pf.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True),))


@pytest.mark.gpu
def test_cuda_roundtrip_and_gradients(rng):
    x = leaf(rng, 3, 4)
    y = x.to("cuda")
    assert y.device == "cuda"
    ((y * y).sum()).backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.data, 2 * x.data)
    with pytest.raises(RuntimeError, match="same device"):
        y + x


def test_backward_frees_the_graph_without_the_cyclic_gc(rng):
    """A node that saved its own output (softmax) must not keep the graph alive after backward:
    a training step's graph is freed when the step drops its last reference, not at the next gc."""
    import gc
    import weakref

    x = pf.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    gc.disable()
    try:
        y = pf.nn.functional.softmax(x * 2.0, dim=-1)
        alive = weakref.ref(y)
        y.sum().backward()
        del y
        assert alive() is None
    finally:
        gc.enable()


def test_a_graph_is_freed_by_reference_counting_and_holds_no_intermediate_tensor():
    import gc
    import weakref

    gc.disable()  # no help from the cycle collector: the graph must hold no reference cycle
    try:
        x = pf.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
        h = x * 2.0
        y = h.exp()  # Exp saves its output: the node must not keep y alive through it
        h_ref, y_ref, node_ref = weakref.ref(h), weakref.ref(y), weakref.ref(y._node)
        del h
        assert h_ref() is None  # the graph keeps the producing node, not the activation Tensor
        loss = y.sum()
        del y
        assert y_ref() is None and node_ref() is not None
        loss.backward()
        np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(2 * x.detach().numpy()))
        del loss
        assert node_ref() is None
    finally:
        gc.enable()


def test_many_uses_sum_in_place_without_touching_given_arrays(rng):
    """A tensor used many times gets its gradient contributions summed (the engine adds the third and
    later ones in place into the sum it made), while the arrays the backward functions hand over, the
    caller's seed gradient among them, are left as they were."""
    x = pf.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    h = x * 2.0
    out = h + h + h * 3.0 + h  # Add hands one array to both of its inputs
    seed = rng.standard_normal((2, 3))
    kept = seed.copy()
    out.backward(pf.tensor(seed))
    np.testing.assert_array_equal(seed, kept)
    np.testing.assert_allclose(x.grad.numpy(), 12.0 * seed, rtol=1e-12)
