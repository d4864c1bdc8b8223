"""`paralign bench --part scale`: a recipe's model at its real size on one accelerator, measured beside the dry
run's estimate.

The model is the recipe's own ``SpeechLLM`` built by its constructor from the architecture configs (random weights:
nothing is downloaded, so a full-scale recipe such as ``llama3_8b_whisper.yaml`` runs on a machine without its
checkpoints); the batch is synthetic, shaped as the dry run assumes the recipe's micro-batch to be (rows x seconds of
audio, prompt tokens, reply tokens). Timed: whole training steps (encoder, adapter, frozen LLM forward and backward
to the speech embeddings, optimizer step) under the recipe's precision and activation checkpointing. Reported: step
time, audio seconds and LLM tokens per second, model FLOP/s, and peak memory against the dry run's estimate.
"""
from __future__ import annotations

import math
import statistics
import time
from contextlib import nullcontext
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from clips.examples import Batch
from paralign.dry_run import GIB, PROMPT_TOKENS, build_model, count, memory_lines, model_parts

PRECISIONS = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def synthetic_batch(cfg: DictConfig, model, device: torch.device) -> tuple[Batch, dict[str, float]]:
    """One micro-batch of the dry run's shape: ``data.max_batch_size`` rows of ``max_batch_seconds / rows`` seconds,
    a 64-token prompt around the speech and the longest reply any enabled task allows, all rows of the task with that
    reply (random features and token ids: the cost does not depend on the values)."""
    rows = cfg.data.max_batch_size
    seconds = cfg.data.max_batch_seconds / rows
    frames = int(seconds * 100)  # log-mel frames: 10 ms hop for every encoder here
    ce_tasks = {name: t for name, t in cfg.tasks.items() if t.enabled and "ce" in t.loss}
    if not ce_tasks:
        raise ValueError("--part scale needs a task with a cross-entropy loss (tasks.<name>.loss: ce)")
    task = max(ce_tasks, key=lambda name: ce_tasks[name].max_target_tokens)
    reply = ce_tasks[task].max_target_tokens
    vocab = model.llm.model.get_input_embeddings().num_embeddings
    ids = torch.Generator().manual_seed(0)

    def tokens(n: int) -> list[list[int]]:
        return torch.randint(1, vocab, (rows, n), generator=ids).tolist()

    if cfg.encoder.type == "hf" and not hasattr(model.encoder, "n_mels"):
        raise ValueError("--part scale builds log-mel batches: a wav2vec2-family encoder (raw waveform) is not "
                         "covered")
    n_mels = getattr(model.encoder, "n_mels", cfg.encoder.n_mels)  # Whisper's own; the conformer's from the recipe
    none = [None] * rows
    batch = Batch(features=torch.randn(rows, frames, n_mels, device=device),
                  feature_lens=torch.full((rows,), frames, device=device), keys=[str(i) for i in range(rows)],
                  meta=[{"emotion": "happy", "style": ["fast"]}] * rows, duration=[seconds] * rows,
                  task=[task] * rows, template=["{speech}"] * rows, prefix=tokens(PROMPT_TOKENS - 16),
                  suffix=tokens(16), target=tokens(reply), target_text=none, words=none, transcript_ids=[[]] * rows,
                  question_type=none, teacher_prompt=none, topk=none, num_frames=rows * frames,
                  audio_seconds=rows * seconds)
    with torch.no_grad():
        speech_tokens = int(model.speech_embeddings(batch.features[:1], batch.feature_lens[:1])[1][0])
    shape = {"rows": rows, "seconds": seconds, "speech_tokens": speech_tokens, "prompt_tokens": PROMPT_TOKENS,
             "reply_tokens": reply, "encoder_frames": frames / 2, "task": task,
             "llm_tokens": rows * (speech_tokens + PROMPT_TOKENS + reply)}
    return batch, shape


def model_flops(modules: dict, shape: dict[str, float]) -> float:
    """FLOPs of one step without recomputation (the usual MFU convention): the frozen LLM 4 x params per token
    (forward, and a backward to its inputs only: no weight gradients), the trainable encoder and adapter 6 x params
    per frame, a frozen encoder 2 x."""
    rows = shape["rows"]
    encoder = modules["encoder"]
    trainable, frozen = count(encoder, True), count(encoder, False)
    return (4 * count(modules["llm"]) * shape["llm_tokens"]
            + (6 * trainable + 2 * frozen) * rows * shape["encoder_frames"]
            + 6 * count(modules["adapter"]) * rows * shape["speech_tokens"])


def scale_benchmark(cfg: DictConfig, steps: int = 10, warmup: int = 3, device: str | None = None) -> dict[str, Any]:
    """Train ``warmup + steps`` synthetic steps of the recipe's full-size model; the report described above."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = cfg.trainer.precision
    if precision not in PRECISIONS:
        raise ValueError(f"--part scale: trainer.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    # One device, no sharding: the dry run's estimate for the same single-rank setting.
    single = OmegaConf.merge(cfg, {"trainer": {"devices": 1, "num_nodes": 1, "strategy": "auto"}})
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    model = build_model(single, dev)
    parts = model_parts(model)
    model.llm.pad_id = 0  # no tokenizer for random weights: any id pads (padded positions are masked)
    model.configure_model()  # activation checkpointing as the recipe says
    model.train()
    build_s = time.perf_counter() - start
    weights_bytes = torch.cuda.memory_allocated(dev) if cuda else None
    optimizer = model.configure_optimizers()["optimizer"]
    batch, shape = synthetic_batch(single, model, dev)
    autocast = (torch.autocast(dev.type, dtype=PRECISIONS[precision]) if PRECISIONS[precision] is not None
                else nullcontext())

    losses: list[float] = []

    def step() -> float:
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model.losses(batch)[0]
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if cuda:
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    for _ in range(warmup):
        step()
    times = [step() for _ in range(steps)]
    median = statistics.median(times)
    if not all(map(math.isfinite, losses)):
        raise RuntimeError(f"--part scale: a training loss was not finite ({losses})")
    lines, assumptions, _ = memory_lines(single, parts)
    report = {
        "recipe": cfg.name, "device": torch.cuda.get_device_name(dev) if cuda else "cpu", "precision": precision,
        "activation_checkpointing": bool(cfg.llm.activation_checkpointing), "batch": shape,
        "parameters": {name: count(m) for name, m in parts.items()},
        "trainable_parameters": sum(p.numel() for p in model.trainable_parameters()),
        "build_s": build_s, "losses": losses, "step_s": median, "step_s_all": times,
        "audio_seconds_per_s": shape["rows"] * shape["seconds"] / median,
        "llm_tokens_per_s": shape["llm_tokens"] / median,
        "model_tflops_per_s": model_flops(parts, shape) / median / 1e12,
        "estimate_gib": {line.label: line.bytes / GIB for line in lines},
        "estimate_total_gib": sum(line.bytes for line in lines) / GIB, "estimate_assumptions": assumptions,
    }
    if cuda:
        report["weights_gib"] = weights_bytes / GIB
        report["peak_gib"] = torch.cuda.max_memory_allocated(dev) / GIB
        report["peak_reserved_gib"] = torch.cuda.max_memory_reserved(dev) / GIB
    return report


def format_scale(report: dict[str, Any]) -> str:
    b = report["batch"]
    out = [f"scale: recipe {report['recipe']!r} on {report['device']}, {report['precision']}, activation "
           f"checkpointing {report['activation_checkpointing']}, random weights at full size",
           "  parameters: " + ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in report["parameters"].items())
           + f"; trainable {report['trainable_parameters'] / 1e6:,.1f} M",
           f"  micro-batch: {b['rows']} rows x {b['seconds']:.1f} s audio; per row {b['speech_tokens']} speech + "
           f"{b['prompt_tokens']} prompt + {b['reply_tokens']} reply tokens (task {b['task']})",
           f"  step: {report['step_s']:.3f} s (median of {len(report['step_s_all'])}); "
           f"{report['audio_seconds_per_s']:,.0f} audio s/s; {report['llm_tokens_per_s']:,.0f} LLM tokens/s; "
           f"{report['model_tflops_per_s']:,.0f} model TFLOP/s (no recompute counted)"]
    if "peak_gib" in report:
        est = report["estimate_total_gib"]
        out.append(f"  memory: peak allocated {report['peak_gib']:.1f} GiB (reserved {report['peak_reserved_gib']:.1f})"
                   f" vs dry-run estimate {est:.1f} GiB (measured / estimate {report['peak_gib'] / est:.2f}); "
                   f"weights and buffers after build {report['weights_gib']:.1f} GiB")
    out += [f"    estimate: {label} {gib:.2f} GiB" for label, gib in report["estimate_gib"].items()]
    return "\n".join(out)
