"""Pure-torch reference of the local spin variables computed by torch.ops.spinforce.local_spin_variables.

Kept for tests and as the fallback the benchmark compares against; the custom op must agree
with it to round-off in value and in first and second derivatives.
"""
from __future__ import annotations

import torch

__all__ = ["local_spin_variables"]


def local_spin_variables(patch: torch.Tensor, pairs: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """(N, M, 3) patches -> (N, nb + nt): bonds S_p.S_q, then chiralities S_a.(S_b x S_c)."""
    bonds = (patch[:, pairs[:, 0]] * patch[:, pairs[:, 1]]).sum(-1)
    a, b, c = patch[:, triangles[:, 0]], patch[:, triangles[:, 1]], patch[:, triangles[:, 2]]
    chiralities = (a * torch.cross(b, c, dim=-1)).sum(-1)
    return torch.cat([bonds, chiralities], dim=1)
