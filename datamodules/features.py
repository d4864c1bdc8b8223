"""Features computed on the fly (in the loader's workers): our own log-mel, or an HF encoder's own extractor.

``build_features`` is the one place a recipe's ``data.features`` is turned into the callable the loader runs.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchaudio
from omegaconf import DictConfig, OmegaConf

from clips.audio import WavePrep


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


class HFFeatures:
    """A pretrained encoder's own feature extractor (``AutoFeatureExtractor`` of a local path or hub id), so the
    encoder sees the input it was trained on. Wave (1-D, at ``sample_rate``) -> float32 tensor with time first,
    so the collate pads dim 0:

    - Whisper: ``[frames, n_mels]``, its log10 / clamped / scaled log-mel, 100 frames per second, at most its 30 s
      window; not padded to 30 s here (the encoder does that), so batches stay as long as their longest clip.
    - the wav2vec2 family (wav2vec2, HuBERT, WavLM): ``[samples]``, the extractor's ``input_values`` (normalised
      per clip where the extractor's ``do_normalize`` says so).

    Plain data (the extractor pickles), so it travels to the DataLoader's worker processes.
    """

    def __init__(self, name: str | None = None, sample_rate: int = 16000, trust_remote_code: bool = False,
                 extractor=None) -> None:
        from transformers import AutoFeatureExtractor, WhisperFeatureExtractor  # only this path needs transformers

        self.extractor = extractor or AutoFeatureExtractor.from_pretrained(name, trust_remote_code=trust_remote_code)
        if self.extractor.sampling_rate != sample_rate:
            raise ValueError(f"{name}'s feature extractor takes {self.extractor.sampling_rate} Hz audio: "
                             f"set data.sample_rate={self.extractor.sampling_rate} (it is {sample_rate})")
        self.sample_rate = sample_rate
        self.is_whisper = isinstance(self.extractor, WhisperFeatureExtractor)
        if not self.is_whisper and self.extractor.model_input_names[0] != "input_values":
            raise ValueError(f"{name}: {type(self.extractor).__name__} is not supported by data.features=hf "
                             "(it knows Whisper's log-mel and the raw waveforms of the wav2vec2 family)")

    def num_frames(self, num_samples: int) -> int:
        if self.is_whisper:
            return min(num_samples, self.extractor.n_samples) // self.extractor.hop_length
        return num_samples

    def __call__(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = np.asarray(wave, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"HFFeatures expects a 1-D mono wave, got shape {tuple(x.shape)}")
        if not self.is_whisper:
            values = self.extractor(x, sampling_rate=self.sample_rate, return_tensors="np")["input_values"][0]
            return torch.from_numpy(values.astype(np.float32))
        # Zeros after the clip, as in the extractor's own 30 s padding: its centred STFT would otherwise reflect
        # the clip's end into the last frame, and the frames would differ from what Whisper saw in training.
        padded = np.pad(x, (0, self.extractor.n_fft // 2))
        mel = self.extractor(padded, sampling_rate=self.sample_rate, padding="longest",
                             return_tensors="np")["input_features"][0]  # [n_mels, frames]
        return torch.from_numpy(np.ascontiguousarray(mel[:, : self.num_frames(x.size)].T, dtype=np.float32))


def build_features(cfg: DictConfig) -> Callable[[np.ndarray], torch.Tensor]:
    """The features a recipe's ``data.features`` names: ``logmel`` (ours, for the conformer), ``hf`` (the
    feature extractor of ``encoder.hf_name``) or ``auto`` (what ``encoder.type`` takes; for ``whisper`` Whisper's
    own log-mel, whose settings are the same for every Whisper but the mel bins, ``encoder.n_mels``). Run folders
    from before the key existed mean ``logmel``."""
    kind = OmegaConf.select(cfg, "data.features", default="logmel")
    encoder = OmegaConf.select(cfg, "encoder.type", default="conformer")
    if kind == "auto" and encoder == "whisper":
        from transformers import WhisperFeatureExtractor

        return HFFeatures(sample_rate=cfg.data.sample_rate,
                          extractor=WhisperFeatureExtractor(feature_size=cfg.encoder.n_mels))
    if kind == "hf" or kind == "auto" and encoder == "hf":
        return HFFeatures(cfg.encoder.hf_name, cfg.data.sample_rate, cfg.encoder.trust_remote_code)
    return LogMel(n_mels=cfg.encoder.n_mels, sample_rate=cfg.data.sample_rate)


def build_wave_prep(cfg: DictConfig) -> WavePrep:
    """What a recipe's ``data.trim_silence_db`` and ``data.level_dbfs`` do to every wave before its features, in
    the loader and in inference alike. Run folders from before a key existed did not do it."""
    return WavePrep(OmegaConf.select(cfg, "data.trim_silence_db"), OmegaConf.select(cfg, "data.level_dbfs"))
