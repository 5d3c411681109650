"""DeepLIFT's rescale rule (Shrikumar et al., 2017) for any network made of our parts, by
intercepting its nonlinear operations rather than its modules.

A reason's contribution is the row's difference from a reference row times a multiplier: what
the gradient would be if every nonlinearity were the straight line through its two points (the
reference's input and output, the row's). Linear operations (layers, embeddings' affine maps,
one-hot blocks, concatenation, ``torch.where`` with a fixed mask) keep their ordinary gradient; an
elementwise nonlinearity (ReLU, clamp, cos, log-sigmoid, ...) passes on ``dy / dx`` of its two
points; ``logsumexp`` over TabM's heads (the heads' mean PD) passes on the same rule through its
parts, ``exp``, the sum and ``log``. By the chain rule for these multipliers, the contributions of
a row add up to its output minus the reference's output, exactly (up to float rounding),
whatever kinks lie between them: the property integrated gradients only approximates with many
points. One forward and one backward pass per (row, reference) pair, against ``steps`` of each
for integrated gradients; the references' own pass is recorded once.

captum's ``DeepLift`` applies the same rule through hooks on ``nn.Module`` nonlinearities, so it
misses the functional ones in rtdl-num-embeddings (``clamp`` in piecewise-linear embeddings,
``cos``/``sin`` in periodic ones), in our monotone side network (``F.relu``) and the heads' mean
PD (``logsumexp``); ``torch.overrides.TorchFunctionMode`` sees every call. tests/unit/test_explain.py
checks the result equals captum's ``DeepLiftShap`` on a plain MLP, where captum applies.

Any operation outside these rules (a layer norm, a product of two activations) keeps its plain
gradient, so completeness may then miss: ``Explainer`` checks every row and integrates the rows
that miss the tolerance instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

EPS = 1e-7  # input differences below this use the row's own derivative

ELEMENTWISE = {
    F.relu, torch.relu, torch.Tensor.relu, F.leaky_relu, F.elu, F.gelu, F.silu, F.softplus,
    F.logsigmoid, torch.sigmoid, torch.Tensor.sigmoid, torch.tanh, torch.Tensor.tanh,
    torch.cos, torch.Tensor.cos, torch.sin, torch.Tensor.sin, torch.exp, torch.Tensor.exp,
    torch.clamp, torch.Tensor.clamp, torch.clamp_min, torch.Tensor.clamp_min,
    torch.clamp_max, torch.Tensor.clamp_max,
}  # fmt: skip
LOGSUMEXP = {torch.logsumexp, torch.Tensor.logsumexp}


class Rescale(TorchFunctionMode):
    """Records each nonlinearity's input on the reference rows, then, on the rows explained,
    replaces its gradient with the rescale rule against the recorded inputs.

    Row ``i * r + j`` of the replayed batch is paired with reference row ``j`` (``r`` recorded
    reference rows). Only tensors that require grad, the ones that depend on the input, are
    rewritten: parameters must not require grad while this mode is on (``frozen``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[tuple[torch.Tensor, torch.Tensor]] = []  # (input, output) per op
        self.replaying, self.calls = False, 0

    def replay(self) -> Rescale:
        self.replaying, self.calls = True, 0
        return self

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        h = args[0] if args else None
        ours = func in ELEMENTWISE or func in LOGSUMEXP
        if not (ours and isinstance(h, torch.Tensor) and h.requires_grad):
            return func(*args, **kwargs)
        op = lambda t: func(t, *args[1:], **kwargs)  # noqa: E731 - the op on another input
        if not self.replaying:
            y = op(h)
            self.recorded.append((h.detach(), y.detach()))
            return y
        reference, y_ref = self.recorded[self.calls]
        self.calls += 1
        if func in LOGSUMEXP:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            reference = reference.repeat(len(h) // len(reference), *[1] * (h.dim() - 1))
            return LogSumExp.apply(h, reference, dim, keepdim)
        return Elementwise.apply(h, reference, y_ref, op)


class Elementwise(torch.autograd.Function):
    """y = op(h); backward: ``(op(h) - op(h_ref)) / (h - h_ref)``, or op's derivative at ``h``
    where the two are closer than ``EPS``. ``reference`` and ``y_ref`` hold the ``r`` reference
    rows' input and output, broadcast against the ``n * r`` rows of ``h``."""

    @staticmethod
    def forward(ctx, h, reference, y_ref, op: Callable) -> torch.Tensor:
        y = op(h)
        pairs = (-1, len(reference), *h.shape[1:])  # (n, r, ...): row i * r + j is (i, j)
        dh = h.view(pairs) - reference
        slope = ((y.view(pairs) - y_ref) / dh).view(h.shape)
        close = (dh.abs() <= EPS).view(h.shape)  # rare: a row equal to a reference row
        if close.any():
            with torch.enable_grad():
                leaf = h.detach().requires_grad_()
                (derivative,) = torch.autograd.grad(op(leaf).sum(), leaf)
            slope = torch.where(close, derivative, slope)
        ctx.save_for_backward(slope)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None, None


class LogSumExp(torch.autograd.Function):
    """y = logsumexp(h, dim); backward: the rescale rule through its parts, ``exp`` of each entry,
    their sum ``S`` (linear) and ``log``: the multiplier of entry j is
    ``(log S - log S_ref) / (S - S_ref) * (e_j - e_ref_j) / (h_j - h_ref_j)``, exact. Every
    exponential is taken relative to the larger of the pair's two sums, so none overflows, and
    ``log S`` is logsumexp's own, so a sum that underflows still has its logarithm."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, reference: torch.Tensor, dim: int, keepdim: bool):
        y, y_ref = torch.logsumexp(h, dim, True), torch.logsumexp(reference, dim, True)
        top = torch.maximum(y, y_ref)
        e, e_ref = (h - top).exp(), (reference - top).exp()  # S / exp(top) is (y - top).exp()
        total, total_ref = (y - top).exp(), (y_ref - top).exp()
        ctx.save_for_backward(
            secant(h, reference, e, e_ref, derivative=e)
            * secant(total, total_ref, y - top, y_ref - top, derivative=1 / total)
        )
        ctx.dim, ctx.keepdim = dim, keepdim
        return y if keepdim else y.squeeze(dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (multiplier,) = ctx.saved_tensors
        return (grad if ctx.keepdim else grad.unsqueeze(ctx.dim)) * multiplier, None, None, None


def secant(
    h: torch.Tensor, reference: torch.Tensor, y: torch.Tensor, y_ref: torch.Tensor, derivative
) -> torch.Tensor:
    """``(y - y_ref) / (h - h_ref)``, and ``derivative`` where the two inputs are closer than
    ``EPS``."""
    dh = h - reference
    close = dh.abs() <= EPS
    return torch.where(close, derivative, (y - y_ref) / torch.where(close, 1.0, dh))
