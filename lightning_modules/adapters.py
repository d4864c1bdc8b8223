"""Adapters: encoder frames -> LLM input embeddings at about 12.5 tokens per second (Ultravox-style projector)."""
from __future__ import annotations

import math

import torch
from torch import nn


class SwiGLU(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim_in, hidden)
        self.up = nn.Linear(dim_in, hidden)
        self.down = nn.Linear(hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))


def _mlp(dim_in: int, hidden: int, dim_out: int, activation: str) -> nn.Module:
    if activation == "swiglu":
        return SwiGLU(dim_in, hidden, dim_out)
    if activation == "gelu":
        return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))
    raise ValueError(f"adapter.activation must be 'swiglu' or 'gelu', got {activation!r}")


class StackingAdapter(nn.Module):
    """Concatenate k consecutive frames, normalise, then an MLP to the LLM hidden size."""

    def __init__(self, dim_in: int, dim_out: int, stack: int, hidden: int | None = None,
                 activation: str = "swiglu") -> None:
        super().__init__()
        self.stack = stack
        self.norm = nn.LayerNorm(dim_in * stack)
        self.mlp = _mlp(dim_in * stack, hidden or dim_out, dim_out, activation)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        pad = (-t) % self.stack
        x = nn.functional.pad(x, (0, 0, 0, pad)).reshape(b, (t + pad) // self.stack, d * self.stack)
        return self.mlp(self.norm(x)), torch.div(lengths + self.stack - 1, self.stack, rounding_mode="floor")


class ConvAdapter(nn.Module):
    """A strided 1-D convolution (kernel = 2*stride) then an MLP: learnt rather than fixed downsampling."""

    def __init__(self, dim_in: int, dim_out: int, stack: int, hidden: int | None = None,
                 activation: str = "swiglu") -> None:
        super().__init__()
        self.stride = stack
        self.conv = nn.Conv1d(dim_in, dim_in, kernel_size=2 * stack, stride=stack, padding=stack // 2)
        self.norm = nn.LayerNorm(dim_in)
        self.mlp = _mlp(dim_in, hidden or dim_out, dim_out, activation)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = nn.functional.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        pad, k = self.stride // 2, 2 * self.stride
        out_lens = torch.div(lengths + 2 * pad - k, self.stride, rounding_mode="floor") + 1
        return self.mlp(self.norm(y)), out_lens.clamp(min=1, max=y.shape[1])


def stack_for_rate(frame_rate: float, tokens_per_second: float) -> int:
    """The stacking factor that brings ``frame_rate`` closest to ``tokens_per_second`` (at least 1)."""
    return max(1, round(frame_rate / tokens_per_second)) if math.isfinite(frame_rate) else 1


def build_adapter(cfg, dim_in: int, dim_out: int, frame_rate: float) -> nn.Module:
    """The adapter a recipe's ``adapter`` section describes; ``stack: 0`` derives it from ``tokens_per_second``."""
    stack = cfg.stack or stack_for_rate(frame_rate, cfg.tokens_per_second)
    kinds = {"stack": StackingAdapter, "conv": ConvAdapter}
    if cfg.type not in kinds:
        raise ValueError(f"adapter.type must be one of {sorted(kinds)}, got {cfg.type!r}")
    return kinds[cfg.type](dim_in, dim_out, stack, cfg.hidden, cfg.activation)
