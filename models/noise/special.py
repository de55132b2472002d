"""ψ (digamma) of positive tensors, in whole-tensor operations.

torch's CPU ``digamma`` evaluates element by element: about 1.3 ms for one 256 × 256 batch
of Dirichlet parameters, against 0.06 ms for ``exp`` and 0.35 ms for ``lgamma``, and the
evidential loss needs ψ of every cell of every batch. This one shifts each argument up by
:data:`SHIFT` with ψ(x + 1) = ψ(x) + 1/x, then sums the asymptotic series, whose first
omitted term is below 1e-10 from x + 6 ≥ 6: about 0.5 ms a batch, matching torch's to
about 1e-11 in float64 and to float32 rounding (tests/models/noise/test_special.py).
"""

from __future__ import annotations

import torch

SHIFT = 6
# ψ(y) ≈ ln y − 1/(2y) + Σ_k c_k / y^(2k)  (the Bernoulli-number series)
_COEFFICIENTS = (-1 / 12, 1 / 120, -1 / 252, 1 / 240, -1 / 132)


def digamma(x: torch.Tensor) -> torch.Tensor:
    """ψ(x) = d ln Γ(x)/dx for x > 0; autograd does not see through it (the evidential
    loss writes its own backward)."""
    y = x + SHIFT
    shift = x.reciprocal()
    for k in range(1, SHIFT):
        shift = shift + (x + float(k)).reciprocal()
    inv = y.reciprocal()
    r2 = inv.square()
    series = torch.full_like(y, _COEFFICIENTS[-1])
    for c in reversed(_COEFFICIENTS[:-1]):  # Horner's rule in 1/y²: no power underflows
        series = series.mul_(r2).add_(c)
    return torch.log(y) - 0.5 * inv + series.mul_(r2) - shift
