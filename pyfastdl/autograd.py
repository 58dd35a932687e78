"""Define-by-run reverse-mode autograd.

Every differentiable operation is a :class:`Function` with a ``forward(ctx, *args)`` and a
``backward(ctx, *grads)`` written side by side. ``Function.apply`` unwraps Tensors into their
ndarrays, runs ``forward`` and, when a gradient is wanted, records a :class:`Node` in the graph.
``Tensor.backward()`` walks the nodes once in reverse topological order, calling each ``backward``
and accumulating gradients, and then frees what each node saved.

Two hooks let code outside the engine act during a backward (distributed data parallel uses both to
start all-reducing gradients while the backward is still running):
``Tensor.register_post_accumulate_grad_hook(hook)`` calls ``hook(tensor)`` once a leaf's gradient is
complete for this backward (every use of the leaf has delivered its part), and
:func:`queue_callback` runs a function when the current backward finishes. Unused, they cost one
counter check per backward.

Bad use raises a clear error: a non-scalar output without a gradient argument, a second backward
through a freed graph, a saved tensor modified in place before the backward, mixed devices or
dtypes in one operation.
"""

from __future__ import annotations

import functools
import threading
import weakref

import numpy as np

from . import backend, profiler

_state = threading.local()
_hooked_leaves = 0  # leaves with a post-accumulate-grad hook: the engine counts gradient edges only if > 0


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

    def mark_non_differentiable(self, *arrays):
        self._non_differentiable.extend(arrays)

    @property
    def saved_tensors(self):
        if self._freed:
            raise RuntimeError(_FREED_MESSAGE)
        return self._saved

    def _free(self):
        """After the backward: drop what was saved, arrays kept as attributes included (a context
        that holds no array stays usable, so a second backward through it works, as in torch)."""
        if self._saved or any(_holds_array(v) for v in self.__dict__.values()):
            self.__dict__.clear()
            self._saved, self._non_differentiable = (), []
            self._freed = True


def _holds_array(value) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_holds_array(v) for v in value)
    return hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__")


class Node:
    """One recorded Function call: its context, where its inputs' gradients go, and its outputs' metadata.

    ``edges`` has one entry per forward argument: None (no gradient wanted), a leaf Tensor (whose
    ``.grad`` accumulates), or ``(node, output_index)`` of the Function that produced the input.
    The graph holds the producing nodes, not the intermediate Tensors themselves, so an activation
    no Function saved for its backward is freed as soon as the user drops it (as in torch)."""

    __slots__ = ("fn", "ctx", "edges", "input_shapes", "saved_versions", "output_meta", "xp", "__weakref__")

    def __init__(self, fn, ctx, edges, input_shapes, saved_versions, output_meta, xp):
        self.fn = fn
        self.ctx = ctx
        self.edges = edges
        self.input_shapes = input_shapes  # shape of each forward argument that wants a gradient
        self.saved_versions = saved_versions  # [(tensor or weak reference to an output, version at save time)]
        self.output_meta = output_meta  # [(shape, dtype)] per output
        self.xp = xp  # the outputs' array module

    def name(self) -> str:
        return self.fn.__name__


def _check_operands(fn_name, tensors):
    """All Tensor operands on one device; all floating-point operands of one dtype."""
    first = tensors[0]._data
    kind = type(first)
    float_dtype = first.dtype if first.dtype.kind == "f" else None
    for t in tensors[1:]:
        d = t._data
        if type(d) is not kind:
            raise RuntimeError(
                f"{fn_name}: expected all tensors on the same device, found {tensors[0].device} and {t.device} "
                "(move them explicitly with .to(device))"
            )
        if d.dtype.kind == "f":
            if float_dtype is None:
                float_dtype = d.dtype
            elif d.dtype != float_dtype:
                raise TypeError(
                    f"{fn_name}: expected all floating-point tensors to have the same dtype, found "
                    f"{float_dtype} and {d.dtype} (convert explicitly with .to(dtype))"
                )


_Tensor = None  # the Tensor class: tensor.py builds on this module and registers it once defined


def register_tensor_class(cls) -> None:
    """Called once by :mod:`pyfastdl.tensor` with its ``Tensor``: the class ``Function.apply``
    wraps arrays in (this module cannot import tensor.py, which imports it)."""
    global _Tensor
    _Tensor = cls


def tensor_class():
    """The registered Tensor class (for modules below tensor.py, e.g. :mod:`pyfastdl.ops`)."""
    return _Tensor


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
        Tensor = _Tensor
        tensors = [a for a in args if isinstance(a, Tensor)]
        if len(tensors) > 1:
            _check_operands(cls.__name__, tensors)
        grad_enabled = getattr(_state, "grad_enabled", True)
        needs = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        record = grad_enabled and True in needs
        ctx = Context(needs if record else (False,) * len(needs))  # nothing to save when nothing is recorded
        raw = [a._data if isinstance(a, Tensor) else a for a in args]
        _state.grad_enabled = False  # the forward itself builds no graph
        try:
            if profiler._active is None:
                out = cls.forward(ctx, *raw)
            else:
                with profiler.range_(cls.__name__ + ".forward", "op"):
                    out = cls.forward(ctx, *raw)
        finally:
            _state.grad_enabled = grad_enabled
        # numpy reductions can return scalars: make every output an array
        is_tuple = isinstance(out, tuple)
        outputs = tuple(o if hasattr(o, "shape") and not isinstance(o, np.generic) else np.asarray(o)
                        for o in (out if is_tuple else (out,)))
        if not record:
            wrapped = tuple(Tensor._wrap(o, False) for o in outputs)
            return wrapped if is_tuple else wrapped[0]
        non_diff = {id(a) for a in ctx._non_differentiable}
        wrapped = tuple(Tensor._wrap(o, id(o) not in non_diff and o.dtype.kind == "f") for o in outputs)
        saved_versions = []
        if ctx._saved:
            saved_ids = {id(a) for a in ctx._saved}
            for t in tensors:
                if id(t._data) in saved_ids:
                    saved_versions.append((t, t._version))
            for t in wrapped:  # a weak reference: an output holding its own node would make a cycle
                if id(t._data) in saved_ids:
                    saved_versions.append((weakref.ref(t), t._version))
        edges, shapes = [], []
        for a, need in zip(args, needs):
            if not need:
                edges.append(None)
                shapes.append(None)
                continue
            edges.append(a if a._node is None else (a._node, a._output_index))
            shapes.append(a._data.shape)
        xp = np if type(outputs[0]) is np.ndarray else backend.get_array_module(outputs[0])
        node = Node(cls, ctx, edges, shapes, saved_versions, [(o.shape, o.dtype) for o in outputs], xp)
        for i, t in enumerate(wrapped):
            if t._requires_grad:
                t._node = node
                t._output_index = i
        return wrapped if is_tuple else wrapped[0]


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
        for e in node.edges:
            if type(e) is tuple and id(e[0]) not in visited:
                stack.append((e[0], False))
    order.reverse()  # root first
    return order


def _as_array(g):
    """numpy arithmetic on 0-d arrays returns scalars; the engine hands out arrays only."""
    return np.asarray(g) if isinstance(g, np.generic) else g


def _accumulate(current, grad):
    return grad if current is None else _as_array(current + grad)


class RemovableHandle:
    """What a hook registration returns: ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        global _hooked_leaves
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)
            if not self._hooks:
                _hooked_leaves -= 1


def register_post_accumulate_grad_hook(tensor, hook) -> RemovableHandle:
    """Call ``hook(tensor)`` in each backward once the leaf ``tensor``'s ``.grad`` holds all of this
    backward's contributions (torch's ``Tensor.register_post_accumulate_grad_hook``)."""
    global _hooked_leaves
    if tensor._node is not None:
        raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors accumulate gradients "
                           f"(this one was made by {tensor._node.name()})")
    if not tensor.requires_grad:
        raise RuntimeError("register_post_accumulate_grad_hook: the tensor does not require grad")
    if "_grad_hooks" not in tensor.__dict__:
        tensor._grad_hooks = []
    if not tensor._grad_hooks:
        _hooked_leaves += 1
    tensor._grad_hooks.append(hook)
    return RemovableHandle(tensor._grad_hooks, hook)


def queue_callback(fn) -> None:
    """Run ``fn()`` when the backward now running finishes (after every gradient is accumulated).
    Only valid from inside a backward, e.g. from a gradient hook."""
    callbacks = getattr(_state, "callbacks", None)
    if callbacks is None:
        raise RuntimeError("queue_callback: no backward is running")
    callbacks.append(fn)


def _hooked_edges(order):
    """{id(leaf): [gradient edges into it still to process, whether one delivered a gradient]} for
    the hooked leaves that the nodes in ``order`` feed."""
    counts = {}
    for node in order:
        for edge in node.edges:
            if edge is not None and type(edge) is not tuple and edge._grad_hooks:
                counts.setdefault(id(edge), [0, False])[0] += 1
    return counts


def _edge_done(t, counts, delivered):
    """One gradient edge into leaf ``t`` has been processed; after its last one, if any delivered a
    gradient, call the leaf's hooks."""
    entry = counts[id(t)]
    entry[0] -= 1
    entry[1] = entry[1] or delivered
    if entry[0] == 0 and entry[1]:
        for hook in list(t._grad_hooks):
            hook(t)


_FREED_MESSAGE = ("Trying to backward through the graph a second time (or to use saved values after they "
                  "were freed). Pass retain_graph=True to the first backward() if you need to call it twice.")


def _check_versions(node):
    for ref, version in node.saved_versions:
        t = ref if not isinstance(ref, weakref.ref) else ref()
        if t is not None and t._version != version:
            raise RuntimeError(
                f"one of the tensors needed for gradient computation of {node.name()} has been modified by "
                f"an in-place operation: a tensor of shape {tuple(t.shape)} is at version {t._version}; "
                f"expected version {version}. Use an out-of-place operation (or clone() it) instead."
            )


def run_backward(tensor, gradient=None, retain_graph=False):
    """Backpropagate from ``tensor``; leaves that require grad get ``.grad`` accumulated and their
    post-accumulate-grad hooks called; callbacks queued during the backward run at its end."""
    if getattr(_state, "callbacks", None) is not None:
        raise RuntimeError("backward(): called from inside another backward (a hook or callback)")
    _state.callbacks = []
    try:
        _run_backward(tensor, gradient, retain_graph)
        while _state.callbacks:
            _state.callbacks.pop(0)()
    finally:
        _state.callbacks = None


def _run_backward(tensor, gradient, retain_graph):
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
        grad = gradient.data if isinstance(gradient, _Tensor) else xp.asarray(gradient, dtype=tensor.dtype)
        if grad.shape != tensor.shape:
            raise ValueError(f"backward(): gradient has shape {tuple(grad.shape)} but the tensor has shape "
                             f"{tuple(tensor.shape)}")

    if tensor._node is None:  # a leaf: its gradient is the seed itself
        tensor._accumulate_grad(grad)
        for hook in list(tensor._grad_hooks):
            hook(tensor)
        return

    pending = {id(tensor._node): [None] * len(tensor._node.output_meta)}
    pending[id(tensor._node)][tensor._output_index] = grad
    order = _topological_order(tensor._node)
    counts = _hooked_edges(order) if _hooked_leaves else {}
    order.reverse()  # popped from the end: root first, and each node is dropped once done
    # (id(node), output index) of the pending gradients that are sums this loop allocated: a third
    # and later contribution adds into them in place (an attention's keys get one per decoder step).
    # The first contribution is stored as given: a backward may hand one array to several inputs.
    summed = set()
    while order:
        node = order.pop()
        out_grads = pending.pop(id(node), None)
        if out_grads is None:
            for edge in node.edges:  # no gradient reached this node: its edges deliver nothing
                if edge is not None and id(edge) in counts:
                    _edge_done(edge, counts, False)
            continue
        if node.ctx._freed:
            raise RuntimeError(_FREED_MESSAGE)
        _check_versions(node)
        grads = [g if g is not None else node.xp.zeros(shape, dtype) for g, (shape, dtype) in
                 zip(out_grads, node.output_meta)]
        del out_grads
        if profiler._active is None:
            in_grads = node.fn.backward(node.ctx, *grads)
        else:
            with profiler.range_(node.fn.__name__ + ".backward", "op"):
                in_grads = node.fn.backward(node.ctx, *grads)
        del grads
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.edges):
            raise RuntimeError(f"{node.name()}.backward returned {len(in_grads)} gradients for "
                               f"{len(node.edges)} forward arguments")
        if not retain_graph:
            node.ctx._free()
            node.saved_versions = ()
        for edge, shape, g in zip(node.edges, node.input_shapes, in_grads):
            if edge is None:
                continue
            if g is None:
                if id(edge) in counts:
                    _edge_done(edge, counts, False)
                continue
            g = _as_array(g)
            if g.shape != shape:
                raise RuntimeError(f"{node.name()}.backward returned a gradient of shape {tuple(g.shape)} for "
                                   f"an input of shape {tuple(shape)}")
            if type(edge) is not tuple:
                edge._accumulate_grad(g)
                if id(edge) in counts:
                    _edge_done(edge, counts, True)
            else:
                producer, index = edge
                slot = pending.get(id(producer))
                if slot is None:
                    slot = pending[id(producer)] = [None] * len(producer.output_meta)
                current = slot[index]
                if (id(producer), index) in summed and current.dtype == g.dtype:
                    current += g  # a sum made below, held by no one else: add in place
                else:
                    slot[index] = _accumulate(current, g)
                    if current is not None:
                        summed.add((id(producer), index))
        del in_grads


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
