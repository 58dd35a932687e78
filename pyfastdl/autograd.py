"""Define-by-run reverse-mode autograd.

Every differentiable operation is a :class:`Function` with a ``forward(ctx, *args)`` and a
``backward(ctx, *grads)`` written side by side. ``Function.apply`` unwraps Tensors into their
ndarrays, runs ``forward`` and, when a gradient is wanted, records a :class:`Node` in the graph.
``Tensor.backward()`` walks the nodes once in reverse topological order, calling each ``backward``
and accumulating gradients, and then frees what each node saved.

Bad use raises a clear error: a non-scalar output without a gradient argument, a second backward
through a freed graph, a saved tensor modified in place before the backward, mixed devices or
dtypes in one operation.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from . import backend, profiler

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


class _GradMode:
    """Context manager and decorator that sets whether operations build the graph."""

    enabled = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """``with pyfastdl.no_grad():`` operations inside build no graph (inference, optimizer steps)."""

    enabled = False


class enable_grad(_GradMode):
    enabled = True


class Context:
    """What a Function's forward hands to its backward.

    ``save_for_backward(*arrays)`` keeps arrays (inputs or outputs of the call); their Tensors'
    versions are recorded and checked before backward runs. Other state goes in attributes.
    """

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self._saved = ()
        self._freed = False
        self._non_differentiable = []

    def save_for_backward(self, *arrays):
        self._saved = arrays

    @property
    def saved_tensors(self):
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or to use saved values after they "
                "were freed). Pass retain_graph=True to the first backward() if you need to call it twice."
            )
        return self._saved

    def mark_non_differentiable(self, *arrays):
        self._non_differentiable.extend(arrays)


class Node:
    """One recorded Function call: its context, the Tensors it was applied to, and its outputs' shapes."""

    __slots__ = ("fn", "ctx", "inputs", "saved_versions", "output_meta")

    def __init__(self, fn, ctx, inputs, saved_versions, output_meta):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs  # one entry per forward argument: a Tensor needing grad, or None
        self.saved_versions = saved_versions  # [(tensor, version at save time)]
        self.output_meta = output_meta  # [(shape, dtype, array module)] per output

    def name(self) -> str:
        return self.fn.__name__


def _check_operands(fn_name, tensors):
    """All Tensor operands on one device; all floating-point operands of one dtype."""
    device = None
    float_dtype = None
    for t in tensors:
        if device is None:
            device = t.device
        elif t.device != device:
            raise RuntimeError(
                f"{fn_name}: expected all tensors on the same device, found {device} and {t.device} "
                "(move them explicitly with .to(device))"
            )
        if t.dtype.kind == "f":
            if float_dtype is None:
                float_dtype = t.dtype
            elif t.dtype != float_dtype:
                raise TypeError(
                    f"{fn_name}: expected all floating-point tensors to have the same dtype, found "
                    f"{float_dtype} and {t.dtype} (convert explicitly with .to(dtype))"
                )


class Function:
    """Base class of differentiable operations. Subclasses define static ``forward`` and ``backward``."""

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        from .tensor import Tensor

        tensors = [a for a in args if isinstance(a, Tensor)]
        _check_operands(cls.__name__, tensors)
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = is_grad_enabled() and any(needs)
        ctx = Context(needs if record else (False,) * len(needs))  # nothing to save when nothing is recorded
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        with no_grad():
            if profiler._active is None:
                out = cls.forward(ctx, *raw)
            else:
                with profiler.range_(cls.__name__ + ".forward", "op"):
                    out = cls.forward(ctx, *raw)
        # numpy reductions can return scalars: make every output an array
        outputs = tuple(o if hasattr(o, "shape") and not isinstance(o, np.generic) else np.asarray(o)
                        for o in (out if isinstance(out, tuple) else (out,)))
        non_diff = {id(a) for a in ctx._non_differentiable}
        wrapped = tuple(
            Tensor(o, requires_grad=record and id(o) not in non_diff and o.dtype.kind == "f") for o in outputs
        )
        if record:
            by_id = {id(t.data): t for t in (*tensors, *wrapped)}
            saved_versions = [(by_id[id(a)], by_id[id(a)]._version) for a in ctx._saved if id(a) in by_id]
            node = Node(
                cls,
                ctx,
                [a if isinstance(a, Tensor) and a.requires_grad else None for a in args],
                saved_versions,
                [(o.shape, o.dtype, backend.get_array_module(o)) for o in outputs],
            )
            for i, t in enumerate(wrapped):
                if t.requires_grad:
                    t._node = node
                    t._output_index = i
        return wrapped if isinstance(out, tuple) else wrapped[0]


def _topological_order(root_node):
    """Nodes reachable from root_node, each after every node that consumes its outputs."""
    order, visited = [], set()
    stack = [(root_node, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t is not None and t._node is not None and id(t._node) not in visited:
                stack.append((t._node, False))
    order.reverse()  # root first
    return order


def _as_array(g):
    """numpy arithmetic on 0-d arrays returns scalars; the engine hands out arrays only."""
    return np.asarray(g) if isinstance(g, np.generic) else g


def _accumulate(current, grad):
    return grad if current is None else _as_array(current + grad)


def run_backward(tensor, gradient=None, retain_graph=False):
    """Backpropagate from ``tensor``; leaves that require grad get ``.grad`` accumulated."""
    from .tensor import Tensor

    if not tensor.requires_grad:
        raise RuntimeError("backward(): the tensor does not require grad and has no graph (did you forget "
                           "requires_grad=True, or compute it under no_grad()?)")
    xp = backend.get_array_module(tensor.data)
    if gradient is None:
        if tensor.data.size != 1:
            raise RuntimeError(
                f"backward(): grad can be implicitly created only for scalar outputs; this tensor has shape "
                f"{tuple(tensor.shape)}. Pass a gradient of that shape: t.backward(gradient)."
            )
        grad = xp.ones_like(tensor.data)
    else:
        grad = gradient.data if isinstance(gradient, Tensor) else xp.asarray(gradient, dtype=tensor.dtype)
        if grad.shape != tensor.shape:
            raise ValueError(f"backward(): gradient has shape {tuple(grad.shape)} but the tensor has shape "
                             f"{tuple(tensor.shape)}")

    if tensor._node is None:  # a leaf: its gradient is the seed itself
        tensor._accumulate_grad(grad)
        return

    pending = {id(tensor._node): [None] * len(tensor._node.output_meta)}
    pending[id(tensor._node)][tensor._output_index] = grad
    for node in _topological_order(tensor._node):
        out_grads = pending.pop(id(node), None)
        if out_grads is None:
            continue
        for t, version in node.saved_versions:
            if t._version != version:
                raise RuntimeError(
                    f"one of the tensors needed for gradient computation of {node.name()} has been modified by "
                    f"an in-place operation: a tensor of shape {tuple(t.shape)} is at version {t._version}; "
                    f"expected version {version}. Use an out-of-place operation (or clone() it) instead."
                )
        grads = [g if g is not None else m.zeros(shape, dtype) for g, (shape, dtype, m) in
                 zip(out_grads, node.output_meta)]
        if profiler._active is None:
            in_grads = node.fn.backward(node.ctx, *grads)
        else:
            with profiler.range_(node.fn.__name__ + ".backward", "op"):
                in_grads = node.fn.backward(node.ctx, *grads)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.inputs):
            raise RuntimeError(f"{node.name()}.backward returned {len(in_grads)} gradients for "
                               f"{len(node.inputs)} forward arguments")
        if not retain_graph:
            node.ctx._saved = ()
            node.ctx._freed = True
        for t, g in zip(node.inputs, in_grads):
            if t is None or g is None:
                continue
            g = _as_array(g)
            if g.shape != t.shape:
                raise RuntimeError(f"{node.name()}.backward returned a gradient of shape {tuple(g.shape)} for "
                                   f"an input of shape {tuple(t.shape)}")
            if t._node is None:
                t._accumulate_grad(g)
            else:
                slot = pending.setdefault(id(t._node), [None] * len(t._node.output_meta))
                slot[t._output_index] = _accumulate(slot[t._output_index], g)


def unbroadcast(grad, shape):
    """Sum a gradient back to ``shape`` after broadcasting: the one helper every broadcasting op uses."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad
