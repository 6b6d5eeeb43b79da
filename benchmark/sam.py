"""SAM perturbations shared by the methods (MIE/IGM, M-SAM), written without a host sync.

Two perturbations, because the released code and the papers use two:

* :func:`perturb_per_tensor_` -- the IGM release's (``train_CREMA.py`` 96-116): each tensor moves by
  ``rho * g / ||g||_2`` with its *own* norm, the parameter's ``.data`` is *rebound* (not changed in place) and
  the move is never undone;
* :func:`sam_ascent` -- textbook SAM (Foret et al. 2021; IGM Eq. 7-8; M-SAM): every tensor moves by
  ``rho * d / (||d||_2 + eps)`` with the *global* norm of the direction ``d`` over all tensors, in place, and is
  restored exactly (copied back) when the context ends.

A zero norm moves nothing in both (the released code would write NaN). The scale is chosen on the device with
``torch.where`` instead of ``if norm > 0`` (one host sync per tensor on a GPU); the values are the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch


@torch.no_grad()
def perturb_per_tensor_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], rho: float) -> None:
    """The IGM release's SAM perturbation: ``p.data = p.data + rho * g_p / ||g_p||_2`` per tensor, never undone
    (``train_CREMA.py`` lines 96-116 and 226-246).

    The parameter's data is *rebound* to a new tensor, as in the code, not changed in place. What autograd then
    sees in a graph recorded before the call (``docs/methods/mie.md``, "What the perturbation reaches"): ops
    that saved the parameter itself (Conv2d, BatchNorm, LayerNorm weights) read the perturbed value in the
    backward pass; ``nn.Linear`` saved a view of the old storage (``weight.t()``), so its backward keeps the
    unperturbed weight. An in-place ``add_`` would perturb both. A tensor whose gradient is None is left alone;
    one whose gradient is exactly zero keeps its values (scale 0 instead of the code's NaN; its data is rebound
    to an equal tensor, which no saved graph can tell apart).
    """
    present = [(p, g) for p, g in zip(params, grads) if g is not None]
    if not present:
        return
    norms = torch._foreach_norm([g for _, g in present], 2)
    for (p, g), norm in zip(present, norms):
        scale = torch.where(norm > 0, rho / norm, torch.zeros_like(norm))  # rho / norm as the code's g * (rho / n)
        p.data = p.data + g * scale


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``||(t_1, ..., t_n)||_2``: the 2-norm of the per-tensor 2-norms (a 0-d tensor; 0 for no tensor)."""
    if not tensors:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors), 2)))


@contextlib.contextmanager
def sam_ascent(
    params: Sequence[torch.Tensor], directions: Sequence[torch.Tensor | None], rho: float, eps: float = 0.0
) -> Iterator[None]:
    """Textbook SAM's ascent step for the duration of the context: ``p += rho * d_p / (||d||_2 + eps)`` with the
    global norm of the directions (None: the tensor does not move), computed in float64 on the device; every
    moved tensor is copied back exactly on exit. ``rho == 0`` or a zero norm moves nothing."""
    moves = [(p, d) for p, d in zip(params, directions) if d is not None]
    saved = [p.detach().clone() for p, _ in moves]
    if moves and rho > 0:
        norm = global_norm([d for _, d in moves]).to(torch.float64) + eps
        scale = torch.where(norm > 0, torch.full_like(norm, rho) / norm, torch.zeros_like(norm))
        with torch.no_grad():
            for p, d in moves:
                p.add_(d * scale.to(d.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for (p, _), s in zip(moves, saved):
                p.copy_(s)
