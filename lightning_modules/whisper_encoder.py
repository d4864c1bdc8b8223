"""A pretrained Whisper encoder run on each clip's real length, with a learned mix of its layers.

transformers' ``WhisperEncoder.forward`` insists on 3000 log-mel frames (30 s): a 3 s clip would cost ten times its
compute, and its frames would attend to 27 s of padding Whisper's middle layers then carry. Here the conv stem and
the layers run on the batch's longest clip, with Whisper's absolute positional table sliced to that length and the
padded frames masked out of attention, so each clip's output is what it would be alone.
"""
from __future__ import annotations

import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_modules.speaker_norm import SpeakerNorm, Speakers

WHISPER_FRAME_RATE = 50.0  # 100 log-mel frames per second, then the stride-2 conv


class WhisperSpeechEncoder(nn.Module):
    """``(features [B, frames, n_mels], lengths [B])`` -> ``(hidden [B, frames/2, d_model], lengths [B])``.

    ``layer``: None mixes every hidden state (the conv stem's output, then each layer's; the last is layer-normed)
    by learned softmax weights, SUPERB style, each state layer-normed without parameters first so no layer wins by
    its scale alone; an integer picks that hidden state (0 = the stem's output, ``len(layers)`` = the last).
    ``mix="concat"`` (with ``layer`` None) instead puts the layer-normed states side by side: ``output_dim`` is then
    ``(len(layers) + 1) * d_model`` and the adapter learns its own combination, per feature rather than per layer.
    ``trainable_layers``: 0 freezes Whisper (run under no_grad, no activations kept), k trains its top k layers
    (the conv stem stays frozen). ``lora``: a ``peft.LoraConfig`` put on the encoder's layers (then Whisper's own
    weights stay frozen and only the LoRA matrices and the mix train). ``speaker_norm``: each speaker's mean state
    moved to the training corpus's (``SpeakerNorm``; a frozen Whisper only, its statistics are computed once).
    """

    def __init__(self, whisper_encoder: nn.Module, layer: int | None = None, trainable_layers: int = 0,
                 lora=None, mix: str = "weighted", speaker_norm: bool = False) -> None:
        super().__init__()
        self.whisper = whisper_encoder
        n_layers = len(whisper_encoder.layers)
        if layer is not None and not 0 <= layer <= n_layers:
            raise ValueError(f"encoder.layer={layer}: this Whisper has hidden states 0..{n_layers}")
        if mix not in ("weighted", "concat"):
            raise ValueError(f"encoder.layer_mix={mix!r}: weighted or concat")
        self.layer = layer
        self.concat = layer is None and mix == "concat"
        self.output_dim = whisper_encoder.config.d_model * ((n_layers + 1) if self.concat else 1)
        self.frame_rate = WHISPER_FRAME_RATE
        self.n_mels = whisper_encoder.config.num_mel_bins
        self.layer_weights = nn.Parameter(torch.zeros(n_layers + 1)) if layer is None and not self.concat else None
        self.whisper.requires_grad_(False)
        if lora is not None:
            from peft import inject_adapter_in_model

            if trainable_layers:
                raise ValueError("encoder.lora_rank and encoder.trainable_layers exclude each other")
            inject_adapter_in_model(lora, self.whisper.layers)
            self.first_trainable = 0
        else:
            self.first_trainable = n_layers - max(0, min(trainable_layers, n_layers))
            for block in list(self.whisper.layers)[self.first_trainable:]:
                block.requires_grad_(True)
        self.frozen = lora is None and self.first_trainable == n_layers
        self.speaker_norm = None
        if speaker_norm:
            if not self.frozen:
                raise ValueError("encoder.speaker_norm needs a frozen Whisper (encoder.lora_rank 0, "
                                 "encoder.trainable_layers 0): its speakers' statistics are computed once")
            self.speaker_norm = SpeakerNorm(1 if layer is not None else n_layers + 1,
                                            whisper_encoder.config.d_model)

    def train(self, mode: bool = True) -> "WhisperSpeechEncoder":
        super().train(mode)
        if self.frozen:
            self.whisper.eval()  # a frozen Whisper is a fixed feature extractor: no dropout, whatever Lightning says
        return self

    def hidden_states(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every hidden state on the real frames (``len(layers) + 1`` tensors ``[B, T', D]``) and their lengths."""
        w = self.whisper
        window = w.config.max_source_positions * w.conv1.stride[0] * w.conv2.stride[0]
        if features.shape[-1] != self.n_mels:
            raise ValueError(f"Whisper takes {self.n_mels} mel bins, the features have {features.shape[-1]}: set "
                             f"encoder.n_mels={self.n_mels}")
        x = features[:, :window].transpose(1, 2).to(w.conv1.weight.dtype)
        lengths = lengths.clamp(max=x.shape[2])
        out_lens = torch.div(lengths + 1, 2, rounding_mode="floor")  # conv2: kernel 3, stride 2, padding 1
        with torch.no_grad():  # the stem is frozen in every mode
            h = nn.functional.gelu(w.conv1(x))
            # conv2 sees one frame past a clip's end: zero, as Whisper's conv padding gives a clip alone
            h = h * (torch.arange(h.shape[2], device=h.device)[None, :] < lengths[:, None])[:, None, :]
            h = nn.functional.gelu(w.conv2(h)).transpose(1, 2)
            h = h + w.embed_positions.weight[: h.shape[1]]
        valid = torch.arange(h.shape[1], device=h.device)[None, :] < out_lens[:, None]
        # additive mask over keys, as Whisper's attention layers take it: [B, 1, 1 -> T', T']
        mask = torch.zeros(valid.shape, dtype=h.dtype, device=h.device).masked_fill(~valid, torch.finfo(h.dtype).min)
        mask = mask[:, None, None, :].expand(-1, 1, h.shape[1], -1)
        states = [h]
        for i, block in enumerate(w.layers):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= self.first_trainable):
                h = block(h, mask)
                h = h[0] if isinstance(h, tuple) else h
            states.append(h)
        with torch.set_grad_enabled(torch.is_grad_enabled() and len(w.layers) > self.first_trainable):
            states[-1] = w.layer_norm(states[-1])
        return states, out_lens

    def blocks(self) -> nn.ModuleList:
        """The repeated blocks (FSDP units, activation-checkpointing units)."""
        return self.whisper.layers

    def normed_states(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The hidden states as the output combines them: the chosen one as it is, or every one layer-normed."""
        states, out_lens = self.hidden_states(features, lengths)
        if self.layer is not None:
            return [states[self.layer]], out_lens
        return [nn.functional.layer_norm(s, s.shape[-1:]) for s in states], out_lens

    def forward(self, features: torch.Tensor, lengths: torch.Tensor,
                speakers: Speakers = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``speakers``: each row's speaker, for ``speaker_norm`` (None: no row's statistics are known)."""
        states, out_lens = self.normed_states(features, lengths)
        if self.speaker_norm is not None:
            states = self.speaker_norm(states, speakers)
        if self.concat:
            return torch.cat(states, dim=-1), out_lens
        if self.layer_weights is None:
            return states[0], out_lens
        weights = torch.softmax(self.layer_weights, dim=0)
        return sum(wt * s for wt, s in zip(weights, states)), out_lens

    def mix_weights(self) -> list[float]:
        """The softmax layer weights (for logging); empty when one layer is chosen."""
        if self.layer_weights is None:
            return []
        return torch.softmax(self.layer_weights.detach().float(), dim=0).tolist()


def build_whisper_encoder(cfg, model: nn.Module | None = None) -> WhisperSpeechEncoder:
    """The Whisper encoder ``cfg`` (a recipe's ``encoder`` section) names; ``model``: an already built
    ``WhisperForConditionalGeneration`` (tests, the dry run on the meta device). Its decoder is dropped."""
    if model is None:
        from lightning_modules.whisper_loading import load_whisper

        if not cfg.name:
            raise ValueError("encoder.type=whisper needs encoder.name (whisper-base, whisper-tiny.en, a folder or "
                             "a hub id)")
        model = load_whisper(cfg.name, cfg.cache_dir)
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
    lora = None
    if cfg.lora_rank > 0:
        from peft import LoraConfig

        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_targets))
    return WhisperSpeechEncoder(encoder, layer=cfg.layer, trainable_layers=cfg.trainable_layers or 0, lora=lora,
                                # run folders from before the key: off
                                mix=cfg.layer_mix, speaker_norm=OmegaConf.select(cfg, "speaker_norm", default=False))
