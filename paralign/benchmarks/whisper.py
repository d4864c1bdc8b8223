"""Benchmark rows for the pretrained Whisper encoder: its one-time conversion from the wheel, its load, and the
encoder's cost per clip on the clip's real length against transformers' own forward padded to the 30 s window."""
from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch

from datamodules.features import HFFeatures
from paralign.benchmarks.timing import interleaved_timings


def whisper_timings(name: str, repeats: int, seconds: float = 3.3, device: torch.device | None = None
                    ) -> dict[str, Any]:
    """Conversion and load seconds (a wheel alias, converted afresh in a temporary cache) and the median encoder
    seconds per clip, real length vs padded to 30 s, for one ``seconds``-long clip."""
    from transformers import WhisperFeatureExtractor

    from lightning_modules.whisper_encoder import WhisperSpeechEncoder
    from lightning_modules.whisper_loading import WHEEL_MODELS, load_whisper, whisper_path

    out: dict[str, Any] = {"model": name, "clip_seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="paralign-whisper-") as cache:
        if name in WHEEL_MODELS:
            start = time.perf_counter()
            whisper_path(name, cache)
            out["convert_s"] = time.perf_counter() - start
        start = time.perf_counter()
        model = load_whisper(name, cache if name in WHEEL_MODELS else None).eval()
        out["load_s"] = time.perf_counter() - start
    device = device or torch.device("cpu")
    whisper = model.get_encoder().to(device)
    encoder = WhisperSpeechEncoder(whisper).eval()
    extractor = WhisperFeatureExtractor(feature_size=whisper.config.num_mel_bins)
    wave = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32)
    real = HFFeatures(extractor=extractor)(wave)[None].to(device)
    padded = torch.from_numpy(extractor(wave, sampling_rate=16000, return_tensors="np")["input_features"]).to(device)
    lengths = torch.tensor([real.shape[1]], device=device)
    sides = {"real": lambda: encoder(real, lengths), "padded": lambda: whisper(input_features=padded)}
    with torch.no_grad():
        times = interleaved_timings(sides, repeats)
    out.update({f"{side}_s": statistics.median(v) for side, v in times.items()})
    out["all"] = times
    return out
