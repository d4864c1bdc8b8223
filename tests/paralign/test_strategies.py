"""Strategies with real parts: 2-process CPU runs (gloo) of the tiny recipe through the real ``paralign train``
CLI with ``ddp`` and with ``fsdp`` (FSDP2), against a 1-process run with the same global batch; per-rank data
splitting under a real process group; ``--dry-run`` counts.

Why the 1-process run is the same training: in the 2-rank runs each rank (0 loader workers) is one data *role*;
one process with 2 loader workers has the same 2 roles, and its DataLoader alternates between them, so with
``accumulate_grad_batches=2`` each optimizer step averages the gradients of the same two batches as a 2-rank step.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules.stream import expand_sources, read_light_clips
from lightning_modules import sharding
from lightning_modules.speech_llm import SpeechLLM
from paralign.dry_run import dry_run, meta_modules
from paralign.recipe_loading import load_recipe
from paralign.train import build_datamodule
from prep.tiny_corpus import build_tiny_corpus
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["trainer.accelerator=cpu", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
          "callbacks.last_checkpoint.every_n_train_steps=2", "data.max_batch_size=2", "optim.scheduler=constant"]
RUNS = {  # name: segments of overrides (a second segment resumes the first's run folder)
    "ddp": [["trainer.devices=2", "trainer.strategy=ddp", "trainer.max_steps=4",
             "callbacks.validation_generations.batches=0",
             "callbacks.sample_keys={}"]],
    # FSDP: stopped after 2 steps and resumed from its checkpoint to 4; validation + generation run under FSDP.
    "fsdp": [["trainer.devices=2", "trainer.strategy=fsdp", f"trainer.max_steps={steps}"] for steps in (2, 4)],
    "single": [["trainer.devices=1", "data.num_workers=2", "trainer.accumulate_grad_batches=2",
                "trainer.max_steps=4", "callbacks.validation_generations.batches=0", "callbacks.sample_keys={}"]],
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("strategies")
    data = root / "data"
    out = {}
    for name, segments in RUNS.items():
        run_dir = root / name
        for overrides in segments:
            cmd = [sys.executable, "-m", "paralign.cli", "train", "--recipe", "recipes/tiny.yaml",
                   f"run.dir={run_dir}", f"data.dir={data}", *COMMON, *overrides]
            done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{name}: {' '.join(cmd)}\n{done.stderr[-4000:]}"
        out[name] = run_dir
    return out


def _scalars(run_dir: Path, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


def _checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def _relative_difference(a: dict, b: dict) -> float:
    """Relative L2 distance between the parameters of two state dicts. BatchNorm statistics are left out: they
    are per-rank buffers (rank 0's are saved), which no strategy averages."""
    assert a.keys() == b.keys()
    keys = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    num = sum((a[k].float() - b[k].float()).pow(2).sum() for k in keys)
    return float((num / sum(a[k].float().pow(2).sum() for k in keys)).sqrt())


def _fixed_batch_losses(runs: dict[str, Path]) -> dict[str, float]:
    """The total loss of each run's final model on the same validation batch (one process, no strategy). In train
    mode (the tiny recipe has no dropout) BatchNorm uses the batch's statistics, not the per-rank running ones."""
    cfg = load_recipe(ROOT / "recipes/tiny.yaml", [f"data.dir={runs['ddp'].parent / 'data'}"])
    model = SpeechLLM(cfg).train()
    batch = next(iter(build_datamodule(cfg, model).val_dataloader()))
    losses = {}
    for name, run_dir in runs.items():
        model.load_state_dict(_checkpoint(run_dir)["state_dict"], strict=False)
        with torch.no_grad():
            losses[name] = float(model.losses(batch)[0])
    return losses


@pytest.mark.slow
def test_ddp_fsdp_and_one_process_train_the_same_model(runs):
    ddp, fsdp = (_scalars(runs[n], "train/loss") for n in ("ddp", "fsdp"))
    assert ddp.keys() == fsdp.keys() and ddp
    for step in ddp:  # rank 0's loss at each logged step: the same batch, the same weights
        assert fsdp[step] == pytest.approx(ddp[step], rel=1e-3), (step, ddp, fsdp)
    print("train/loss by step (rank 0):", json.dumps({"ddp": ddp, "fsdp": fsdp}))
    val = {n: _scalars(runs[n], "val/loss") for n in ("ddp", "fsdp")}
    print("val/loss by step:", json.dumps(val))
    assert val["fsdp"].keys() == val["ddp"].keys() == {1, 3}
    for step in val["ddp"]:
        assert val["fsdp"][step] == pytest.approx(val["ddp"][step], rel=1e-3)
    states = {n: _checkpoint(d)["state_dict"] for n, d in runs.items()}
    # Adam's first steps amplify last-bit differences of near-zero gradients (all-reduce vs reduce-scatter
    # summation order), so the weights agree to a small relative norm rather than bit for bit.
    assert _relative_difference(states["ddp"], states["fsdp"]) < 5e-3
    assert _relative_difference(states["ddp"], states["single"]) < 5e-3
    losses = _fixed_batch_losses(runs)
    print("loss of the final model on one fixed validation batch:", json.dumps(losses))
    assert losses["fsdp"] == pytest.approx(losses["ddp"], rel=2e-3)
    assert losses["single"] == pytest.approx(losses["ddp"], rel=2e-3)


def _keys_by_rank(run_dir: Path) -> dict[int, dict[int, list[str]]]:
    """callbacks.sample_keys records: rank -> optimizer step -> the keys of the batches trained on at that step."""
    out: dict[int, dict[int, list[str]]] = {}
    for path in (run_dir / "sample_keys").glob("rank*.jsonl"):
        steps = out.setdefault(int(path.stem.removeprefix("rank")), {})
        for record in map(json.loads, path.read_text().splitlines()):
            if "step" in record:
                steps.setdefault(record["step"], []).extend(record["keys"])
    return out


@pytest.mark.slow
def test_ranks_train_on_disjoint_shares_that_make_the_one_process_global_batch(runs):
    ddp, single = _keys_by_rank(runs["ddp"]), _keys_by_rank(runs["single"])
    assert sorted(ddp) == [0, 1] and sorted(single) == [0]
    assert ddp[0].keys() == ddp[1].keys() == single[0].keys() == {0, 1, 2, 3}
    rank0, rank1 = ([k for keys in ddp[r].values() for k in keys] for r in (0, 1))
    assert rank0 and rank1 and not set(rank0) & set(rank1)  # one epoch: each rank its own clips
    for step in ddp[0]:  # a 2-rank step trains on what one process accumulates over 2 batches
        assert sorted(ddp[0][step] + ddp[1][step]) == sorted(single[0][step])


@pytest.mark.slow
def test_fsdp_checkpoints_leave_out_the_llm_resume_and_validate(runs):
    ckpt = _checkpoint(runs["fsdp"])
    assert ckpt["global_step"] == 4  # 2 steps, then resumed from last.ckpt for 2 more
    assert not any(k.startswith("llm.") for k in ckpt["state_dict"])
    expected = {k for k in SpeechLLM(load_recipe(ROOT / "recipes/tiny.yaml")).state_dict() if not k.startswith("llm.")}
    assert set(ckpt["state_dict"]) == expected
    assert all(not v.is_meta and type(v) is torch.Tensor for v in ckpt["state_dict"].values())  # full, not DTensor
    assert (runs["fsdp"] / "checkpoints" / "last.ckpt").stat().st_size < 3e6
    events = EventAccumulator(str(runs["fsdp"] / "tensorboard")).Reload()
    assert "val/generations/text_summary" in events.Tags()["tensors"]  # generation ran on both ranks
    assert {"val/loss", "val/emotion/answer_acc"} <= set(events.Tags()["scalars"])


@pytest.mark.slow
def test_each_rank_reads_its_own_share(tmp_path):
    """2 ranks in a real gloo process group: whole shards per role (0 workers: 2 roles, 2 train shards) or every
    n-th sample (2 workers: 4 roles). Train shares are disjoint; validation shares also cover the split."""
    build_tiny_corpus(tmp_path / "data")
    out = tmp_path / "keys"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests/paralign/rank_keys_job.py"), str(out), str(tmp_path / "data"), "0", "2"]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for workers in (0, 2):
        ranks = [json.loads((out / f"rank{r}-workers{workers}.json").read_text()) for r in range(2)]
        for split in ("train", "val"):
            everything = {clip.key for url in expand_sources(str(tmp_path / "data"), split)
                          for clip in read_light_clips(url, Counter())}
            shares = [set(rank[split]) for rank in ranks]
            assert all(shares) and not shares[0] & shares[1], (workers, split)
            assert sum(len(rank[split]) for rank in ranks) == len(shares[0] | shares[1])  # nothing read twice
            if split == "val":
                assert shares[0] | shares[1] == everything
            else:  # training stops every rank at the shortest rank's batch count: a short tail may be left out
                assert shares[0] | shares[1] <= everything and len(shares[0] | shares[1]) >= len(everything) - 4


def _saved_bytes_and_grads(model: SpeechLLM, batch: dict) -> tuple[int, dict]:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        model.losses(batch)[0].backward()
    return sum(saved), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_activation_checkpointing_keeps_less_and_changes_nothing():
    torch.manual_seed(0)
    plain = SpeechLLM(tiny_cfg()).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.cfg.llm.activation_checkpointing = True
    checkpointed.configure_model()  # no device mesh outside ModelParallelStrategy: checkpointing only
    # a recomputed layer would append to the shared opening's KV cache twice: every row runs in full instead
    assert not checkpointed.llm.share_opening
    plain.llm.share_opening = False  # the same passes, so the same gradients to the last bit of tolerance
    batch = batch_for(plain, [make_clip(i, 120 + 10 * i) for i in range(3)])
    (kept_plain, grads_plain), (kept_ckpt, grads_ckpt) = (_saved_bytes_and_grads(m, batch)
                                                          for m in (plain, checkpointed))
    assert kept_ckpt < 0.75 * kept_plain  # the rest: conv subsampler, LM-head logits, loss (tiny model)
    assert grads_plain.keys() == grads_ckpt.keys()
    assert all(torch.allclose(grads_plain[k], grads_ckpt[k], atol=1e-6) for k in grads_plain)
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()  # checkpoints stay interchangeable
    assert plain.generate(batch, max_new_tokens=4) == checkpointed.generate(batch, max_new_tokens=4)


def test_fsdp_refuses_an_online_teacher_pass():
    model = SpeechLLM(tiny_cfg({"response": {"loss": "ce+kl", "kl_source": "online"}}))
    with pytest.raises(ValueError, match="kl_source=online .tasks response"):
        sharding.shard(model, mesh=None)


def test_dry_run_counts_equal_the_real_model():
    cfg = load_recipe(ROOT / "recipes/tiny.yaml", ["classifier.enabled=true"])
    real = SpeechLLM(cfg)
    meta = meta_modules(cfg)  # SpeechLLM's own constructor, on the meta device: no memory, no weights read
    assert all(p.is_meta for part in meta.values() for p in part.parameters())
    for name, module in (("llm", real.llm), ("encoder", real.encoder), ("adapter", real.adapter),
                         ("heads", real.classifiers)):
        assert sum(p.numel() for p in meta[name].parameters()) == sum(p.numel() for p in module.parameters()), name
    trainable = sum(p.numel() for p in real.trainable_parameters())
    assert f"{trainable:,}" in dry_run(cfg)


def test_dry_run_of_the_full_scale_recipe(capsys):
    from paralign.cli import main

    assert main(["train", "--recipe", str(ROOT / "recipes/llama3_8b_whisper.yaml"), "--dry-run"]) == 0
    report = capsys.readouterr().out
    assert "8,030,261,248 (frozen)" in report  # Llama-3-8B-Instruct, from its shipped config
    # the Whisper-large-v3 encoder alone (the decoder is not built into the model) + its 33 layer-mix weights
    assert "636,968,993" in report
    frozen = next(line for line in report.splitlines() if "frozen LLM weights" in line)
    assert "sharded over 8" in frozen and 1.8 < float(frozen.split()[-2]) < 1.9  # 16 GB of bf16 over 8 GPUs
    total = float(next(line for line in report.splitlines() if line.strip().startswith("total") and "GiB" in line)
                  .split()[-2])
    assert 5 < total < 40  # fits an 80 GB GPU with room to spare


def test_dry_run_of_an_unknown_model_says_what_to_do():
    from paralign.cli import main

    with pytest.raises(SystemExit, match="no config shipped for it"):
        main(["train", "--recipe", str(ROOT / "recipes/tiny.yaml"), "llm.name=/nowhere/Some-Model", "--dry-run"])


def test_full_scale_recipe_validates():
    cfg = load_recipe(ROOT / "recipes/llama3_8b_whisper.yaml")
    t = cfg.trainer
    assert (t.strategy, t.precision, cfg.llm.activation_checkpointing, t.devices) == ("fsdp", "bf16-mixed", True, 8)
    assert cfg.encoder.type == "whisper" and cfg.llm.dtype == "bfloat16"
