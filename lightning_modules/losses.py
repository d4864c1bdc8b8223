"""Alignment losses on the supervised (reply) positions only.

Inputs are flat over the N supervised positions of a batch: student ``logits`` [N, V], ``targets`` [N], and the
example ``rows`` [N] each position belongs to, so per-task losses are means over that task's tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy [N] (sequence-level distillation when targets are teacher replies)."""
    return F.cross_entropy(logits, targets, reduction="none")


def kl_full(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-position KL(teacher || student) [N] over the whole vocabulary, scaled by T^2 (Hinton et al.)."""
    t = temperature
    log_q = F.log_softmax(student_logits / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1) * t * t


def kl_topk(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """Per-position KL [N] against a teacher known only by its top-k tokens (renormalised over those k).

    The student's log-probabilities are over the full vocabulary, gathered at the teacher's k tokens. (The fused
    log-softmax is faster here than ``gather - logsumexp``, whose backward is three unfused passes on a CPU.)
    """
    t = temperature
    log_q = F.log_softmax(student_logits if t == 1 else student_logits / t, dim=-1).gather(-1, topk_ids)
    log_p = F.log_softmax(topk_logprobs.float() / t, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1) * t * t


def per_row_mean(values: torch.Tensor, rows: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions whose row is in ``select`` (bool per row); 0 if none.

    Without a data-dependent branch or boolean indexing, so it never waits for the GPU (no host sync)."""
    mask = select[rows]
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp(min=1)
