"""A CTC loss that makes the speech tokens spell the transcript in the frozen LLM's own input-embedding space.

Each speech token is scored against every row of the LLM's (frozen) token-embedding table by cosine similarity
with a learned scale, plus a learned blank vector; CTC aligns the transcript's token ids to the speech tokens. It
needs no LLM pass (one matmul with the embedding table), so it runs in the cheap warm-start steps too, and it
gives the adapter a direct path to "the words as the LLM reads them", which the cross-entropy through the frozen
LLM finds only slowly. The blank frames and the pooled tokens stay free to carry how things were said.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class TokenCTC(nn.Module):
    def __init__(self, hidden_size: int, embedding_table: Callable[[], torch.Tensor], negatives: int = 2048) -> None:
        super().__init__()
        # A callable, not a submodule: the table belongs to the frozen LLM (never trained, never checkpointed here).
        self.embedding_table = embedding_table
        self.blank = nn.Parameter(torch.randn(hidden_size) * 0.02)
        self.scale = nn.Parameter(torch.tensor(10.0))
        # Training scores the batch's own tokens plus this many others drawn at random (a sampled softmax): the
        # whole table (49k rows for SmolLM2) would cost more than the rest of a warm-start step. 0: the whole table.
        self.negatives = negatives

    def logits(self, speech: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, V + 1]``: cosine similarity to each LLM token embedding (or to the table's ``rows``), the blank
        last."""
        table = self.embedding_table().detach()
        table = table if rows is None else table[rows]
        table = nn.functional.normalize(torch.cat([table.float(), self.blank[None].float()], dim=0), dim=-1)
        return self.scale * nn.functional.normalize(speech.float(), dim=-1) @ table.T

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]) -> torch.Tensor | None:
        """Mean CTC loss over the examples with a transcript (None when none has one)."""
        keep = [i for i, t in enumerate(targets) if t and len(t) <= int(lengths[i])]
        if not keep:
            return None
        rows = torch.tensor(keep, device=speech.device)
        flat = torch.tensor([tok for i in keep for tok in targets[i]], device=speech.device)
        vocab = self.embedding_table().shape[0]
        candidates = None
        if self.negatives and self.negatives < vocab:
            drawn = torch.randint(vocab, (self.negatives,), device=speech.device)
            candidates, flat = torch.unique(torch.cat([flat, drawn]), return_inverse=True)
            flat = flat[: len(flat) - self.negatives]  # the targets, as indices into the candidates
        log_probs = self.logits(speech[rows], candidates).log_softmax(-1).transpose(0, 1)  # [T, B, C + 1]
        target_lens = torch.tensor([len(targets[i]) for i in keep], device=speech.device)
        return nn.functional.ctc_loss(log_probs, flat, lengths[rows], target_lens, blank=log_probs.shape[-1] - 1,
                                      reduction="mean", zero_infinity=True)

    @torch.no_grad()
    def greedy(self, speech: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best-path decoding: the token ids the speech tokens spell (repeats merged, blanks dropped)."""
        best = self.logits(speech).argmax(-1)
        blank = self.embedding_table().shape[0]
        out = []
        for row, n in zip(best, lengths.tolist()):
            ids = torch.unique_consecutive(row[:n])
            out.append(ids[ids != blank].tolist())
        return out
