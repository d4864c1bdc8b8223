"""The frozen LLM: prompts through its chat template, speech spliced at a placeholder, loss on the reply only.

Frozen by construction: parameters never require grad, the module stays in eval mode whatever its parent does,
and ``SpeechLLM`` leaves it out of the optimizer and of checkpoints.
"""
from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from transformers import PreTrainedModel

from clips.padding import pad_rows
from clips.prompts import ChatPrompter

IGNORE_INDEX = -100


class FrozenLLM(nn.Module):
    """Wraps a transformers causal LM so that only its inputs can learn."""

    def __init__(self, model: PreTrainedModel, prompter: ChatPrompter | None, model_id: str = "") -> None:
        """``prompter`` None: weights only, no prompts (the dry run's model on the meta device, whose tokenizer
        may not be on this machine)."""
        super().__init__()
        model.requires_grad_(False)
        self.model = model.eval()
        self.prompter = prompter
        # teacher-forced passes run the rows' shared opening once (``shared_opening``); off where the LLM is sharded or
        # its layers are checkpointed (lightning_modules/sharding.py)
        self.share_opening = True
        self.model_id = model_id or getattr(model.config, "_name_or_path", "")
        self.pad_id = prompter.pad_id if prompter is not None else None
        self.eos_id = prompter.eos_id if prompter is not None else None

    def train(self, mode: bool = True) -> "FrozenLLM":
        # Dropout or other train-time behaviour in the LLM would change the function the encoder aligns to.
        return super().train(False)

    def forward(self, op: str, *args, **kwargs):
        """The one entry point to the LLM's weights (``embed``, ``label_logits``, ``generate``). Under FSDP2 this
        module is the root unit that holds the embeddings, final norm and LM head (lightning_modules/sharding.py),
        and its weights are gathered only when a call goes through ``__call__``."""
        return getattr(self, f"_{op}")(*args, **kwargs)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self("embed", ids)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    # ---- splicing ------------------------------------------------------------------------------------------------
    def splice(
        self,
        prefix: list[list[int]],
        speech: torch.Tensor,
        speech_lens: torch.Tensor,
        suffix: list[list[int]],
        target: list[list[int]] | None = None,
        left_pad: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Build ``inputs_embeds``, ``attention_mask``, ``position_ids`` (and ``labels``) for a mixed-length batch.

        Each row is prefix | speech[:len] | suffix | target. Right padding for training (labels -100 outside the
        target), left padding for generation (``target`` None). One embedding lookup and one masked scatter per
        batch; the Python loop is over rows, never over tokens.
        """
        device = speech.device
        batch = len(prefix)
        lens = speech_lens.tolist()
        targets = target if target is not None else [[] for _ in range(batch)]
        rows = [p + [self.pad_id] * n + s + t for p, n, s, t in zip(prefix, lens, suffix, targets)]
        ids, mask = pad_rows(rows, self.pad_id, left=left_pad)
        width = ids.shape[1]
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        is_speech = torch.zeros((batch, width), dtype=torch.bool)
        for i, (p, n, t) in enumerate(zip(prefix, lens, targets)):
            start = width - len(rows[i]) if left_pad else 0
            is_speech[i, start + len(p):start + len(p) + n] = True
            if t:
                labels[i, start + len(rows[i]) - len(t):start + len(rows[i])] = torch.tensor(t)
        ids, labels, is_speech, mask = (x.to(device) for x in (ids, labels, is_speech, mask))
        embeds = self.embed(ids).to(speech.dtype)
        valid = torch.arange(speech.shape[1], device=device)[None, :] < speech_lens[:, None]
        embeds = embeds.masked_scatter(is_speech[..., None], speech[valid])
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        out = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": position_ids, "is_speech": is_speech}
        if target is not None:
            out["labels"] = labels
        return out

    # ---- forward, loss, generation -------------------------------------------------------------------------------
    def label_logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits only where a label follows (the LM head over the vocabulary is skipped elsewhere).

        Returns (logits [N, V], targets [N], row index [N]) for the N supervised positions.
        """
        return self("label_logits", inputs_embeds, attention_mask, position_ids, labels)

    def text_label_logits(self, prompts: list[list[int]], targets: list[list[int]]
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`label_logits` of token-id rows ``prompt + target``, teacher-forced (right-padded, labels on the
        target only): the teacher's distribution over each reply position, as the student is trained on it."""
        device = self.model.device
        ids, mask = pad_rows([p + t for p, t in zip(prompts, targets)], self.pad_id)
        labels = torch.full_like(ids, IGNORE_INDEX)
        for i, (p, t) in enumerate(zip(prompts, targets)):
            labels[i, len(p):len(p) + len(t)] = torch.tensor(t)
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        return self.label_logits(self.embed(ids), mask, (mask.cumsum(-1) - 1).clamp(min=0), labels)

    def _label_logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        decoder = self.model.get_decoder()
        shared = shared_opening(inputs_embeds, attention_mask, labels) if self.share_opening else 0
        cache = None
        if shared:
            # The opening every row has alike (system turn, user header) once, on one row and without gradient (the
            # LLM is frozen and nothing before it learns); the rest of every row runs on copies of its KV cache.
            with torch.no_grad():
                opening = decoder(inputs_embeds=inputs_embeds[:1, :shared], attention_mask=attention_mask[:1, :shared],
                                  position_ids=position_ids[:1, :shared], use_cache=True)
            cache = returned_cache(opening)
            cache.batch_repeat_interleave(inputs_embeds.shape[0])
        hidden = decoder(
            inputs_embeds=inputs_embeds[:, shared:], attention_mask=attention_mask,
            position_ids=position_ids[:, shared:], use_cache=cache is not None, **cache_kwarg(decoder, cache),
        ).last_hidden_state
        shifted = labels[:, shared + 1:]
        where = shifted != IGNORE_INDEX
        logits = self.model.get_output_embeddings()(hidden[:, :-1][where]).float()
        rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(shifted)[where]
        return logits, shifted[where], rows

    @torch.no_grad()
    def continuation_logprobs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                              continuations: list[list[int]]) -> torch.Tensor:
        """Summed log-probability of each of K token-id continuations after each of B left-padded spliced prompts
        ([B, K]; the closed-set reading of a question). The prompt runs once, with its KV cache; the K
        continuations run against copies of that cache, so scoring K answers costs about one prompt pass."""
        return self("continuation_logprobs", inputs_embeds, attention_mask, continuations)

    def _continuation_logprobs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                               continuations: list[list[int]]) -> torch.Tensor:
        return continuation_logprobs(self.model, inputs_embeds, attention_mask, continuations, self.pad_id)

    @torch.no_grad()
    def generate(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int = 64,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
        """Replies for a left-padded batch of spliced prompts (KV cache on)."""
        kwargs = {"do_sample": do_sample}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        out = self("generate", inputs_embeds, attention_mask, max_new_tokens, kwargs)
        return self.prompter.tokenizer.batch_decode(out, skip_special_tokens=True)

    def generate_text(self, prompts: list[list[int]], **options) -> list[str]:
        """Replies to prompts of token ids alone (no speech): the cascades, and perceive's text replies."""
        ids, mask = pad_rows(prompts, self.pad_id, left=True)
        device = self.model.device
        return self.generate(self.embed(ids.to(device)), mask.to(device), **options)

    def _generate(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                  kwargs: dict) -> torch.Tensor:
        # Sharded, every rank must run as many forward passes as the slowest (their all-gathers pair up):
        # synced_gpus keeps a rank that has finished stepping until all have.
        return self.model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
            eos_token_id=self.eos_id, pad_token_id=self.pad_id, use_cache=True,
            synced_gpus=isinstance(self, FSDPModule), **kwargs,
        )


MIN_SHARED = 4  # a shorter shared opening is not worth its own pass


def shared_opening(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> int:
    """How many leading positions all rows of a right-padded batch have alike and unlabelled, up to the one before
    the first label (it predicts that label); 0 when it is too short to save anything or there is one row."""
    if inputs_embeds.shape[0] < 2:
        return 0
    alike = (inputs_embeds == inputs_embeds[:1]).all(-1).all(0) & attention_mask.bool().all(0)
    n = int(alike.long().cumprod(0).sum())
    labelled = (labels != IGNORE_INDEX).any(0).nonzero()
    n = min(n, int(labelled[0]) - 1 if len(labelled) else n, inputs_embeds.shape[1] - 1)
    return n if n >= MIN_SHARED else 0


def _common_prefix(rows: list[list[int]]) -> list[int]:
    """The tokens all ``rows`` start with, leaving each at least one of its own."""
    n = 0
    while all(len(r) > n + 1 for r in rows) and len({r[n] for r in rows}) == 1:
        n += 1
    return rows[0][:n]


def cache_kwarg(model: nn.Module, cache) -> dict:
    """A KV cache as ``model.forward`` takes it: ``cache`` in recent transformers (where ``past_key_values``, the
    older name, warns and goes in 5.40), ``past_key_values`` before."""
    return {_cache_name(type(model)): cache}


@functools.cache
def _cache_name(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a forward pass returned, under either name (see ``cache_kwarg``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def continuation_logprobs(model: PreTrainedModel, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                          continuations: list[list[int]], pad_id: int) -> torch.Tensor:
    """Summed log-probability of each of K token-id continuations after each of B left-padded prompts ([B, K]) under
    a causal LM: the prompt, with the opening all continuations share, runs once with its KV cache; the rest of each
    continuation runs on copies of that cache (the closed-set answers, the local judge's score bands)."""
    device, rows, k = inputs_embeds.device, inputs_embeds.shape[0], len(continuations)
    # the tokens every continuation starts with ("The speaker sounds") go with the prompt, once per row
    shared = _common_prefix(continuations)
    if shared:
        ids = torch.tensor(shared, device=device)[None, :].expand(rows, -1)
        inputs_embeds = torch.cat([inputs_embeds, model.get_input_embeddings()(ids).to(inputs_embeds.dtype)], dim=1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(rows, len(shared))], dim=1)
    out = model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0), use_cache=True,
                logits_to_keep=len(shared) + 1)
    head = out.logits.float().log_softmax(-1)  # predicts each shared token, then each continuation's next one
    total = head[:, -1][:, [c[len(shared)] for c in continuations]]
    if shared:
        wanted = torch.tensor(shared, device=device)[None, :, None].expand(rows, -1, 1)
        total = total + head[:, :-1].gather(-1, wanted).squeeze(-1).sum(-1, keepdim=True)
    rests = [c[len(shared):] for c in continuations]
    width = max(len(r) for r in rests) - 1
    if width == 0:
        return total
    # each continuation's remaining tokens but its last as input, but its first as what they must predict
    ids = torch.full((k, width), pad_id, dtype=torch.long)
    wanted = torch.zeros((k, width), dtype=torch.long)
    valid = torch.zeros((k, width), dtype=torch.bool)
    for i, r in enumerate(rests):
        ids[i, :len(r) - 1], wanted[i, :len(r) - 1], valid[i, :len(r) - 1] = torch.tensor(r[:-1]), \
            torch.tensor(r[1:]), True
    ids, wanted, valid = (x.to(device).repeat(rows, 1) for x in (ids, wanted, valid))  # row b * k + i
    cache = returned_cache(out)
    cache.batch_repeat_interleave(k)
    mask = torch.cat([attention_mask.repeat_interleave(k, 0), valid.to(attention_mask.dtype)], dim=1)
    start = attention_mask.sum(-1).repeat_interleave(k)
    positions = start[:, None] + torch.arange(width, device=device)[None, :]
    logits = model(inputs_embeds=model.get_input_embeddings()(ids).to(inputs_embeds.dtype), attention_mask=mask,
                   position_ids=positions, use_cache=True, **cache_kwarg(model, cache)).logits
    picked = logits.float().log_softmax(-1).gather(-1, wanted[..., None]).squeeze(-1)
    return total + (picked * valid).sum(-1).view(rows, k)
