"""The optimizer and its learning-rate schedule, built from the values they use (as NeMo's ``parts/optim_setup.py``):
the parameters to train, the recipe's ``optim:`` section, the run's ``max_steps`` and the classifier warm start's
length. ``SpeechLLM.configure_optimizers`` hands these over; nothing here reads the rest of the recipe.

AdamW over the trainable parameters only: matrices with ``optim.weight_decay``, vectors (biases, norms) without,
and Whisper's learned layer mix in a group of its own (``optim.lr x optim.layer_mix_lr_scale``, no decay, which
would pull it to uniform). The schedule is a linear warm-up then cosine / linear decay to ``optim.min_lr_ratio``
(or constant); with a classifier warm start it runs twice: over the warm-start steps, then afresh over the
alignment steps (whose loss is a different function, so they start from the peak rate again).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn


def lr_factor(step: int, *, warmup_steps: int, scheduler: str, min_lr_ratio: float, max_steps: int,
              pretrain_steps: int = 0) -> float:
    """The learning rate at a global ``step``, as a share of ``optim.lr`` (see the module docstring; ``scheduler``
    is checked by ``load_recipe``: any other value than cosine or constant decays linearly)."""
    pretrain = min(pretrain_steps, max_steps)
    start, end = (0, pretrain) if step < pretrain else (pretrain, max_steps)
    step, total = step - start, max(1, end - start)
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    if scheduler == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if scheduler == "cosine" else 1 - progress
    return min_lr_ratio + (1 - min_lr_ratio) * shape


def param_groups(params: Iterable[nn.Parameter], optim: Any,
                 layer_mix: nn.Parameter | None = None) -> list[dict[str, Any]]:
    """AdamW's groups over the parameters that train (``requires_grad``): decayed matrices, undecayed vectors, and
    the layer mix apart at its own rate when it trains."""
    trainable = [p for p in params if p.requires_grad and p is not layer_mix]
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": optim.weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    if layer_mix is not None and layer_mix.requires_grad:
        groups.append({"params": [layer_mix], "weight_decay": 0.0, "lr": optim.lr * optim.layer_mix_lr_scale})
    return groups


def build_optimizer(params: Iterable[nn.Parameter], optim: Any, max_steps: int, pretrain_steps: int = 0,
                    layer_mix: nn.Parameter | None = None) -> dict[str, Any]:
    """AdamW and its per-step schedule, in the form Lightning's ``configure_optimizers`` returns.

    ``optim`` is the recipe's ``optim:`` section (``lr``, ``weight_decay``, ``betas``, ``warmup_steps``,
    ``scheduler``, ``min_lr_ratio``, ``layer_mix_lr_scale``); ``max_steps`` the run's last step;
    ``pretrain_steps`` the classifier warm start's length (0: none); ``layer_mix`` the encoder's learned layer
    weights, if it has them (they may also be among ``params``)."""
    optimizer = torch.optim.AdamW(param_groups(params, optim, layer_mix), lr=optim.lr, betas=tuple(optim.betas))
    shape = dict(warmup_steps=optim.warmup_steps, scheduler=optim.scheduler, min_lr_ratio=optim.min_lr_ratio,
                 max_steps=max_steps, pretrain_steps=pretrain_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, **shape))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
