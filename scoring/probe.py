"""The linear probe: how much a label can be read from mean-pooled speech tokens by a linear classifier.

Fitted on one half of the clips (by a hash of the clip key, so the halves are stable) and scored on the other, or
fitted on other clips (e.g. a corpus's train split) and scored on every clip. Validation (callbacks/linear_probe.py)
and evaluation (`paralign eval`) use this one function.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import torch

from clips.vocab import LABEL_SETS, label_class

Pooled = dict[str, tuple[torch.Tensor, dict]]  # clip key -> (pooled speech tokens, metadata)


def fit_probe_accuracy(x_fit: torch.Tensor, y_fit: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor,
                       classes: int, l2: float = 1e-3, steps: int = 100) -> float:
    """Accuracy on (x_eval, y_eval) of a multinomial logistic regression fitted on (x_fit, y_fit)."""
    mean, std = x_fit.mean(0), x_fit.std(0).clamp(min=1e-6)
    x_fit, x_eval = (x_fit - mean) / std, (x_eval - mean) / std
    layer = torch.nn.Linear(x_fit.shape[1], classes)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x_fit), y_fit) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((layer(x_eval).argmax(-1) == y_eval).float().mean())


def probe_accuracy(kind: str, pooled: Pooled, fit_on: Pooled | None = None, min_clips: int = 8) -> float | None:
    """Probe accuracy for one label kind (see the module doc); None with fewer than ``min_clips // 2`` clips on
    either side or a single class to fit."""
    fit: tuple[list, list] = ([], [])
    score: tuple[list, list] = ([], [])
    for key, (vec, meta) in pooled.items():
        label = label_class(kind, meta)
        if label is not None:
            part = score if fit_on is not None or zlib.crc32(key.encode()) % 2 else fit
            part[0].append(vec)
            part[1].append(label)
    for vec, meta in (fit_on or {}).values():
        label = label_class(kind, meta)
        if label is not None:
            fit[0].append(vec)
            fit[1].append(label)
    if min(len(fit[1]), len(score[1])) < min_clips // 2 or len(set(fit[1])) < 2:
        return None
    return fit_probe_accuracy(torch.stack(fit[0]), torch.tensor(fit[1]), torch.stack(score[0]),
                              torch.tensor(score[1]), len(LABEL_SETS[kind]))


@torch.no_grad()
def head_accuracy(kind: str, head: torch.nn.Module, pooled: Pooled, among: Sequence[str] | None = None
                  ) -> float | None:
    """Accuracy of the model's own classifier head for ``kind`` on the pooled tokens of the labelled clips of
    ``pooled`` (None without one): trained with the model, it reads the tokens the LLM is given, so it tells a
    reading gap (the head right, the LLM's answer wrong) from a features gap. ``among``: the argmax over these
    labels only (a closed set, e.g. the emotions another corpus shares); None: over every label it knows."""
    rows = [(vec, label_class(kind, meta)) for vec, meta in pooled.values()]
    rows = [(vec, y) for vec, y in rows if y is not None]
    if not rows:
        return None
    weight = next(head.parameters())
    x = torch.stack([vec for vec, _ in rows]).to(device=weight.device, dtype=weight.dtype)
    logits = head(x)
    if among is not None:
        keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        keep[[LABEL_SETS[kind].index(label) for label in among]] = True
        logits = logits.masked_fill(~keep, float("-inf"))
    predicted = logits.argmax(-1).cpu()
    return float((predicted == torch.tensor([y for _, y in rows])).float().mean())
