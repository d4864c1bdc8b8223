"""The throughput callback: rates from host-side batch fields, padding ratio, MFU estimate only with a known peak."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from callbacks.throughput import PROGRESS_BAR, Throughput, model_flops, peak_flops
from clips.examples import Batch
from lightning_modules.speech_llm import SpeechLLM
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg


class FakeModule:
    """What the callback touches on a LightningModule: device, encoder/adapter rates and ``log``."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.encoder = SimpleNamespace(frame_rate=25.0)
        self.adapter = SimpleNamespace(stack=2)
        self.logged: dict[str, tuple[float, bool]] = {}

    def log(self, name: str, value: float, prog_bar: bool = False) -> None:
        self.logged[name] = (value, prog_bar)


def _batch(lengths: list[int], seconds: float) -> Batch:
    n = len(lengths)
    return Batch(features=torch.zeros(n, max(lengths), 80), feature_lens=torch.tensor(lengths), keys=["k"] * n,
                 meta=[{}] * n, duration=[seconds / n] * n, task=["response"] * n, template=["{speech}"] * n,
                 prefix=[[1, 2, 3]] * n, suffix=[[4]] * n, target=[[5, 6]] * n, target_text=[None] * n,
                 words=[None] * n, transcript_ids=[[]] * n, question_type=[None] * n, teacher_prompt=[None] * n,
                 topk=[None] * n, num_frames=sum(lengths), audio_seconds=seconds)


def test_rates_padding_and_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.0, 2.0])  # __init__, on_train_start, the end of the window
    monkeypatch.setattr("callbacks.throughput.time.perf_counter", lambda: next(clock))
    cb, module = Throughput(window=2), FakeModule()
    cb.on_train_start(None, module)
    for step, lengths in enumerate(([100, 50], [80, 80])):
        batch = _batch(lengths, sum(lengths) / 100)
        cb.on_train_batch_start(None, module, batch, step)
        cb.on_train_batch_end(None, module, None, batch, step)
    logged = {k: v for k, (v, _) in module.logged.items()}
    assert logged["perf/samples_per_s"] == 4 / 2
    assert math.isclose(logged["perf/audio_s_per_s"], 3.1 / 2)
    assert math.isclose(logged["perf/padding_ratio"], 1 - 310 / 360)
    # 4 examples x (4 prompt + 2 target) text tokens, and 3.1 s of speech at 25 / 2 = 12.5 tokens per second
    assert math.isclose(logged["perf/tokens_per_s"], (24 + 3.1 * 12.5) / 2)
    assert logged["perf/target_tokens_per_s"] == 8 / 2 and logged["perf/step_s"] == 1.0
    assert "perf/mfu" not in logged  # no GPU, no peak: no MFU figure
    assert {k for k, (_, bar) in module.logged.items() if bar} == set(PROGRESS_BAR) - {"perf/mfu"}


def test_mfu_inputs() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16-mixed") == 989e12
    assert peak_flops("NVIDIA H100 80GB HBM3", "32-true") == 989e12 / 2
    assert peak_flops("a CPU", "bf16-mixed") is None
    model = SpeechLLM(tiny_cfg())
    per_token, per_target, per_frame, frame_rate = model_flops(model)
    decoder = model.llm.model.get_decoder()
    # the decoder's layers and final norm: every weight an LLM token meets, embedding table and head aside
    weights = sum(p.numel() for p in decoder.layers.parameters()) + sum(p.numel() for p in decoder.norm.parameters())
    head = model.llm.model.get_output_embeddings().weight
    assert per_token == 4 * weights and per_target == 4 * head.numel() and frame_rate == model.encoder.frame_rate
    assert per_frame == 6 * sum(p.numel() for p in model.trainable_parameters())
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200)])
    assert batch.num_frames == int(batch.feature_lens.sum())  # the host-side count the callback reads
