"""Training throughput in TensorBoard and the progress bar: samples/s, audio-seconds/s, tokens/s, padding ratio,
and on a GPU an MFU estimate (model FLOPs utilisation).

Everything is counted from host-side batch fields (``audio_seconds``, ``num_frames``, token id lists) so the
callback never waits for the GPU.
"""
from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch

# Dense bf16/fp16 tensor-core peaks (FLOP/s) by device-name fragment; TF32 (32-bit runs) is half of these.
PEAK_FLOPS = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12,
              "L4": 121e12, "V100": 125e12, "4090": 165e12, "3090": 71e12}
PROGRESS_BAR = ("perf/samples_per_s", "perf/audio_s_per_s", "perf/tokens_per_s", "perf/padding_ratio", "perf/mfu")


def peak_flops(device_name: str, precision: str) -> float | None:
    """The device's peak FLOP/s for the trainer precision, or None for an unknown device."""
    for fragment, peak in PEAK_FLOPS.items():
        if fragment in device_name:
            return peak if "16" in precision else peak / 2
    return None


def model_flops(module: pl.LightningModule) -> tuple[float, float, float, float]:
    """Per-unit FLOPs of a SpeechLLM step: (per LLM token, per supervised token, per encoder frame, encoder frames
    per audio second). The frozen LLM runs forward and backward to its inputs (2 + 2 FLOPs per weight and token,
    no weight gradients); the LM head only on supervised tokens; encoder and adapter train (2 + 4)."""
    llm = module.llm.model
    head = llm.get_output_embeddings().weight
    table = llm.get_input_embeddings().weight
    tied = head.data_ptr() == table.data_ptr()
    decoder = sum(p.numel() for p in llm.parameters()) - table.numel() - (0 if tied else head.numel())
    trainable = sum(p.numel() for p in module.trainable_parameters())
    return 4.0 * decoder, 4.0 * head.numel(), 6.0 * trainable, float(module.encoder.frame_rate)


class Throughput(pl.Callback):
    """Rates over the last ``window`` steps (per process; multiply by world size for the job's rate)."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.flops: tuple[float, float, float, float] | None = None
        self.peak: float | None = None
        self.speech_tokens_per_s = 0.0
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.start, self.steps = now, 0
        self.samples = self.frames = self.padded = self.text_tokens = self.target_tokens = 0
        self.seconds = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        encoder, adapter = getattr(pl_module, "encoder", None), getattr(pl_module, "adapter", None)
        stack = getattr(adapter, "stack", None) or getattr(adapter, "stride", 1)
        if encoder is not None:
            self.speech_tokens_per_s = float(encoder.frame_rate) / stack
        device = pl_module.device
        if device.type == "cuda" and hasattr(pl_module, "llm"):
            self.peak = peak_flops(torch.cuda.get_device_name(device), str(trainer.precision))
            self.flops = model_flops(pl_module) if self.peak else None
        self._reset(time.perf_counter())

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        feats = batch.features
        self.samples += len(batch.task)
        self.seconds += batch.audio_seconds
        self.frames += batch.num_frames
        self.padded += feats.shape[0] * feats.shape[1]
        self.text_tokens += sum(len(p) + len(s) for p, s in zip(batch.prefix, batch.suffix))
        self.target_tokens += sum(map(len, batch.target))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.steps += 1
        if self.steps < self.window:
            return
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        speech_tokens = self.seconds * self.speech_tokens_per_s
        tokens = self.text_tokens + self.target_tokens + speech_tokens  # what the LLM reads
        metrics = {
            "perf/samples_per_s": self.samples / elapsed,
            "perf/audio_s_per_s": self.seconds / elapsed,
            "perf/tokens_per_s": tokens / elapsed,
            "perf/target_tokens_per_s": self.target_tokens / elapsed,
            "perf/padding_ratio": 1 - self.frames / max(self.padded, 1),
            "perf/step_s": elapsed / self.steps,
        }
        if self.flops and self.peak:
            per_token, per_target, per_frame, frame_rate = self.flops
            flops = per_token * tokens + per_target * self.target_tokens + per_frame * self.seconds * frame_rate
            metrics["perf/mfu"] = flops / elapsed / self.peak
        for name, value in metrics.items():
            pl_module.log(name, value, prog_bar=name in PROGRESS_BAR)
        self._reset(now)
