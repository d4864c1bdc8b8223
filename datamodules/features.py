"""Log-mel features computed on the fly (in the loader's workers)."""
from __future__ import annotations

import numpy as np
import torch
import torchaudio


class LogMel:
    """Wave (numpy or torch, 1-D, at ``sample_rate``) -> float32 tensor ``[frames, n_mels]`` of log mel energies.

    Frames are centred, so a clip of ``n`` samples gives ``n // hop + 1`` frames (100 per second by default).
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, win_ms: float = 25.0, hop_ms: float = 10.0):
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.win_length = int(round(sample_rate * win_ms / 1000))
        self.hop_length = int(round(sample_rate * hop_ms / 1000))
        n_fft = 1 << (self.win_length - 1).bit_length()  # next power of two for the FFT
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=self.win_length,
            hop_length=self.hop_length, n_mels=n_mels, power=2.0,
        )

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def __call__(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(wave, dtype=torch.float32)
        if x.dim() != 1:
            raise ValueError(f"LogMel expects a 1-D mono wave, got shape {tuple(x.shape)}")
        with torch.no_grad():
            mel = self._mel(x)  # [n_mels, frames]
        return torch.log(mel.clamp(min=1e-10)).transpose(0, 1).contiguous()
