"""Speech encoders: a Conformer trained from scratch on log-mel, or a pretrained transformers audio encoder.

Every encoder maps (features [B, T, F], lengths [B]) to (hidden [B, T', D], lengths [B]) and exposes
``output_dim`` and ``frame_rate`` (output frames per second) so the adapter can aim at ~12.5 tokens/s.
"""
from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import Conformer

FEATURE_FRAME_RATE = 100.0  # log-mel hop of 10 ms (datamodules.features.LogMel)


class ConvSubsampler(nn.Module):
    """Two stride-2 3x3 convolutions over (time, mel): 4x fewer frames, as in ESPnet / NeMo conformers."""

    def __init__(self, n_mels: int, d_model: int, channels: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU(),
        )
        freq = (n_mels + 1) // 2
        freq = (freq + 1) // 2
        self.proj = nn.Linear(channels * freq, d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))  # [B, C, T/4, F/4]
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        for _ in range(2):
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        return x, lengths.clamp(min=1, max=t)


class ConformerEncoder(nn.Module):
    """torchaudio's Conformer behind a 4x conv subsampler, on globally normalised log-mel.

    The normalisation is one fixed mean and scale for every clip and bin (``feature_mean`` / ``feature_std``),
    not per utterance: per-utterance normalisation would erase how loud a clip is, which is part of its emotion.
    Padded frames are set to 0 after normalisation (the mean), whatever the collate padded them with.
    """

    def __init__(self, n_mels: int = 80, d_model: int = 256, layers: int = 8, heads: int = 4, ffn_dim: int = 1024,
                 kernel_size: int = 15, dropout: float = 0.1, feature_mean: float = 0.0,
                 feature_std: float = 1.0) -> None:
        super().__init__()
        self.feature_mean = feature_mean
        self.feature_std = feature_std
        self.subsample = ConvSubsampler(n_mels, d_model)
        self.conformer = Conformer(input_dim=d_model, num_heads=heads, ffn_dim=ffn_dim, num_layers=layers,
                                   depthwise_conv_kernel_size=kernel_size, dropout=dropout)
        self.output_dim = d_model
        self.frame_rate = FEATURE_FRAME_RATE / 4

    def blocks(self) -> nn.ModuleList:
        """The repeated blocks (FSDP units, activation-checkpointing units)."""
        return self.conformer.conformer_layers

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.arange(features.shape[1], device=features.device)[None, :] < lengths[:, None]
        x = (features - self.feature_mean) / self.feature_std * valid[..., None]
        x, lengths = self.subsample(x, lengths)
        return self.conformer(x, lengths)


class HFAudioEncoder(nn.Module):
    """A transformers wav2vec2-family encoder (wav2vec2, HuBERT, WavLM) from a local path or hub id, on the raw
    16 kHz waveform its feature extractor gives (``data.features: hf``), ``[B, samples]`` with lengths in samples.
    (A Whisper ``hf_name`` is built as ``WhisperSpeechEncoder`` on its last hidden state: see ``build_encoder``.)

    ``trainable_layers``: None trains everything, 0 freezes everything, k trains the top k layers only.
    """

    def __init__(self, name: str, trainable_layers: int | None = None, trust_remote_code: bool = False,
                 model: nn.Module | None = None) -> None:
        super().__init__()
        if model is None:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(name, trust_remote_code=trust_remote_code, dtype=torch.float32)
        self.model = model
        self.output_dim = model.config.hidden_size
        self.frame_rate = 16000 / _conv_stride(model.config)
        # wav2vec2-base style models (group-normed conv features) are trained without an attention mask and
        # degrade with one (transformers' docs): they get zero-padded input only.
        self.use_mask = getattr(model.config, "feat_extract_norm", "layer") == "layer"
        self._freeze(trainable_layers)

    def _freeze(self, trainable_layers: int | None) -> None:
        if trainable_layers is None:
            return
        self.model.requires_grad_(False)
        layers = self.model.encoder.layers
        for layer in list(layers)[len(layers) - trainable_layers:] if trainable_layers else []:
            layer.requires_grad_(True)

    def blocks(self) -> nn.ModuleList:
        """The repeated blocks (FSDP units, activation-checkpointing units)."""
        return self.model.encoder.layers

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = None
        if self.use_mask:
            mask = (torch.arange(inputs.shape[1], device=inputs.device)[None] < lengths[:, None]).long()
        hidden = self.model(input_values=inputs, attention_mask=mask).last_hidden_state
        out_lens = self.model._get_feat_extract_output_lengths(lengths).long()
        return hidden, out_lens.clamp(max=hidden.shape[1])


def _conv_stride(config) -> int:
    stride = 1
    for s in config.conv_stride:
        stride *= s
    return stride


def build_encoder(cfg, model: nn.Module | None = None) -> nn.Module:
    """The encoder a recipe's ``encoder`` section describes; ``model``: an already built transformers model for
    ``whisper`` / ``hf`` (the dry run builds one from its config on the meta device)."""
    if cfg.type == "conformer":
        return ConformerEncoder(n_mels=cfg.n_mels, d_model=cfg.d_model, layers=cfg.layers, heads=cfg.heads,
                                ffn_dim=cfg.ffn_dim, kernel_size=cfg.kernel_size, dropout=cfg.dropout,
                                feature_mean=cfg.feature_mean, feature_std=cfg.feature_std)
    if cfg.type == "whisper":
        from lightning_modules.whisper_encoder import build_whisper_encoder

        return build_whisper_encoder(cfg, model=model)
    if cfg.type == "hf":
        if not cfg.hf_name:
            raise ValueError("encoder.type=hf needs encoder.hf_name (a local path or hub id)")
        if model is None:
            from transformers import AutoModel

            # float32 whatever the checkpoint's dtype (transformers 5 loads "auto": a float16 Whisper would train
            # its weights in float16); mixed precision is the Trainer's business
            model = AutoModel.from_pretrained(cfg.hf_name, trust_remote_code=cfg.trust_remote_code, dtype=torch.float32)
        if model.config.model_type == "whisper":  # on the clip's real length, never padded to 30 s
            from lightning_modules.whisper_encoder import WhisperSpeechEncoder

            layers = model.config.encoder_layers
            trainable = layers if cfg.trainable_layers is None else cfg.trainable_layers
            return WhisperSpeechEncoder(model.get_encoder(), layer=layers, trainable_layers=trainable)
        return HFAudioEncoder(cfg.hf_name, cfg.trainable_layers, cfg.trust_remote_code, model=model)
    raise ValueError(f"encoder.type must be 'conformer', 'whisper' or 'hf', got {cfg.type!r}")
