"""The optimizer and its two-phase schedule (lightning_modules/optim.py), built from the values they use."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_modules.optim import build_optimizer, lr_factor
from paralign.recipe_loading import load_recipe

OPTIM = OmegaConf.create({"lr": 1e-3, "weight_decay": 0.01, "betas": [0.9, 0.98], "warmup_steps": 10,
                          "scheduler": "cosine", "min_lr_ratio": 0.05, "layer_mix_lr_scale": 20.0})


def factors(steps, **shape):
    return [lr_factor(s, **{"warmup_steps": 10, "scheduler": "cosine", "min_lr_ratio": 0.05, **shape})
            for s in steps]


def test_warm_up_then_cosine_down_to_the_floor():
    got = factors([0, 4, 9, 10, 55, 100, 500], max_steps=100)
    assert got[:3] == pytest.approx([0.1, 0.5, 1.0])  # linear warm-up over 10 steps
    assert got[3] == pytest.approx(1.0)  # the peak
    assert got[4] == pytest.approx(0.05 + 0.95 * 0.5)  # half way through the decay
    assert got[5] == got[6] == pytest.approx(0.05)  # the floor, and it stays there


def test_linear_and_constant_schedules():
    assert factors([10, 55, 100], max_steps=100, scheduler="linear") == pytest.approx([1.0, 0.05 + 0.95 * 0.5, 0.05])
    assert factors([0, 10, 99], max_steps=100, scheduler="constant") == pytest.approx([0.1, 1.0, 1.0])


def test_a_classifier_warm_start_runs_the_schedule_twice():
    got = factors([0, 9, 29, 30, 39, 40, 85, 130], max_steps=130, pretrain_steps=30)
    assert got[:2] == pytest.approx([0.1, 1.0])  # warm-up of the warm start
    assert got[2] == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 19 / 20)))  # its last step
    assert got[3:5] == pytest.approx([0.1, 1.0])  # afresh for the alignment steps: warm-up again from step 30
    assert got[5] == pytest.approx(1.0)
    assert got[6] == pytest.approx(0.05 + 0.95 * 0.5)  # half way through its 90 decay steps (40..130)
    assert got[7] == pytest.approx(0.05)
    # a warm start longer than the run is the whole run
    assert factors([5, 59], max_steps=60, pretrain_steps=1000) == factors([5, 59], max_steps=60)


def test_adamw_gets_only_the_trainable_parameters_in_their_groups():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[2].requires_grad_(False)  # frozen: never in the optimizer
    mix = nn.Parameter(torch.zeros(7))
    built = build_optimizer([*model.parameters(), mix], OPTIM, max_steps=100, layer_mix=mix)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW) and built["lr_scheduler"]["interval"] == "step"
    assert optimizer.defaults["betas"] == (0.9, 0.98)
    decayed, plain, own = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [(4, 4)] and decayed["weight_decay"] == 0.01
    assert [p.shape for p in plain["params"]] == [(4,), (4,), (4,)] and plain["weight_decay"] == 0.0
    assert own["params"][0] is mix and own["weight_decay"] == 0.0
    assert own["lr"] == pytest.approx(1e-3 * 20 * 0.1)  # its own rate, warming up with the others
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in [*model.parameters(), mix] if p.requires_grad}
    assert decayed["lr"] == pytest.approx(1e-3 * 0.1)  # step 0 of the warm-up
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert decayed["lr"] == pytest.approx(1e-3) and own["lr"] == pytest.approx(1e-3 * 20)

    mix.requires_grad_(False)  # a frozen mix gets no group of its own
    assert len(build_optimizer(model.parameters(), OPTIM, max_steps=100, layer_mix=mix)["optimizer"].param_groups) == 2


def test_the_recipes_optim_section_is_what_it_takes():
    cfg = load_recipe("recipes/tiny.yaml")
    params = [nn.Parameter(torch.zeros(2, 2))]
    built = build_optimizer(params, cfg.optim, cfg.trainer.max_steps, cfg.classifier.pretrain_steps)
    assert built["optimizer"].defaults["lr"] == cfg.optim.lr
