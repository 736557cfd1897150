"""Shims that let the book's and LitGPT's code run on Debian's torch 1.13 (shared by tools/)."""
import torch
import torch.nn as nn


class TorchRMSNorm(nn.Module):
    """torch.nn.RMSNorm (torch >= 2.4) for torch 1.13: weight * x / sqrt(mean(x^2) + eps)."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None,
                 dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) \
            else tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype)) \
            if elementwise_affine else None

    def forward(self, x):
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        dims = tuple(range(-len(self.normalized_shape), 0))
        x = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
        return x * self.weight if self.weight is not None else x
