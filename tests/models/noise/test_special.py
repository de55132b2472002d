"""The vectorised ψ agrees with torch's wherever the losses evaluate it."""

from __future__ import annotations

import torch

from pairsift.models.noise.special import SHIFT, digamma


def test_digamma_matches_torch_in_float64_across_its_range() -> None:
    x = torch.cat([
        torch.linspace(1e-3, 1.0, 500, dtype=torch.float64),
        torch.linspace(1.0, float(SHIFT) + 1, 500, dtype=torch.float64),  # across the shift
        torch.logspace(1, 7, 500, dtype=torch.float64),  # e^(1/τ) + 1 and batch row sums
    ])
    torch.testing.assert_close(digamma(x), torch.digamma(x), rtol=1e-10, atol=1e-10)


def test_digamma_float32_is_float32_rounding_and_keeps_the_dtype() -> None:
    x = torch.exp(torch.tanh(torch.linspace(-1, 1, 4097)) / 0.1) + 1.0  # the loss's α
    out = digamma(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.digamma(x.double()).float(), rtol=2e-6, atol=2e-6)
