"""Cached teacher replies: the frozen LLM's answer to each clip's *text* prompt, stored in the shards.

For every clip, task (``teacher.tasks``) and variant (``conditioned``: transcript plus emotion/style in words;
``plain``: transcript only) the teacher prompt is the task's first instruction template with the speech slot filled
by words (the recipe's ``prompt`` framing: ``Framing.teacher_text``), tokenised exactly as the student's prompt
around the speech span. Identical prompts (many clips share a
sentence and an emotion) are generated once, in length-sorted left-padded batches with the KV cache. Every finished
batch is appended to ``teacher_cache.jsonl`` in the output folder, so a cut run resumes without regenerating; the
replies then go into every sample as ``<key>.teacher.json`` (merged with what the clip already holds).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm import tqdm
from transformers import GenerationConfig

from clips.members import VARIANT_NAMES, TeacherReplies, TeacherReply, Variant
from clips.metadata import with_metadata
from clips.padding import pad_rows
from clips.prompts import ChatPrompter, Framing
from clips.shard_writer import rewrite_shards, shard_files
from clips.tar_samples import iter_tar_samples
from clips.tasks import DEFAULT_INSTRUCTIONS
from lightning_modules.frozen_llm import FrozenLLM
from prep.jsonl_cache import append_cache, read_cache

log = logging.getLogger(__name__)

CACHE_NAME = "teacher_cache.jsonl"


# ---- generation ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate_batch(llm: FrozenLLM, prompts: list[list[int]], max_new_tokens: int,
                   do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0) -> list[list[int]]:
    """Reply token ids for a batch of prompt ids: left-padded, KV cache on, each cut before its end-of-turn token.

    Greedy unless ``do_sample`` (then sampling at ``temperature`` from the ``top_p`` nucleus; the defaults: plain
    sampling over the whole vocabulary).
    """
    device = llm.model.device
    ids, mask = pad_rows(prompts, llm.pad_id, left=True)
    # A config of our own, not the model's generation_config: the settings stored with each reply are all there is.
    settings = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=llm.eos_id,
                                pad_token_id=llm.pad_id, use_cache=True, top_k=0 if do_sample else None,
                                **({"temperature": temperature, "top_p": top_p} if do_sample else {}))
    out = llm.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=settings)
    replies = []
    for row in out[:, ids.shape[1]:].tolist():
        replies.append(row[:row.index(llm.eos_id)] if llm.eos_id in row else row)
    return replies


def generate_sorted(llm: FrozenLLM, prompts: list[list[int]], batch_size: int, max_new_tokens: int,
                    do_sample: bool = False, temperature: float = 1.0,
                    top_p: float = 1.0) -> Iterator[tuple[list[int], list[list[int]]]]:
    """Generate in batches of similar-length prompts (little padding); yields (indices into ``prompts``, reply
    ids) per batch."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, generate_batch(llm, [prompts[i] for i in idx], max_new_tokens, do_sample, temperature, top_p)


@torch.no_grad()
def reply_topk(llm: FrozenLLM, prompts: list[list[int]], targets: list[list[int]], k: int) -> list[dict[str, list]]:
    """Top-k token ids and log-probs of the teacher at every position of ``targets`` (teacher-forced after each
    prompt), so position i matches token i of the ids the student is trained on."""
    logits, _, rows = llm.text_label_logits(prompts, targets)
    top = logits.log_softmax(-1).topk(k, dim=-1)
    top_ids, top_lp = top.indices.tolist(), top.values.double().round(decimals=4).tolist()
    out: list[dict[str, list]] = [{"ids": [], "logprobs": []} for _ in prompts]
    for row, i, lp in zip(rows.tolist(), top_ids, top_lp):
        out[row]["ids"].append(i)
        out[row]["logprobs"].append(lp)
    return out


# ---- prompts ---------------------------------------------------------------------------------------------------------
def teacher_templates(cfg: DictConfig) -> dict[str, str]:
    """task -> the user-turn template its teacher prompts use: the task's first instruction."""
    templates = {}
    for task in cfg.teacher.tasks:
        if task not in DEFAULT_INSTRUCTIONS:
            raise ValueError(f"teacher.tasks: unknown task {task!r} (known: {', '.join(DEFAULT_INSTRUCTIONS)})")
        given = list(cfg.tasks[task].instructions) if task in cfg.tasks else []
        template = (given or DEFAULT_INSTRUCTIONS[task])[0]
        if "{question}" in template:
            raise ValueError(f"teacher.tasks: task {task!r} asks generated questions; its targets come from "
                             "`paralign qa-generate`, not from the teacher")
        templates[task] = with_metadata(template, "")  # the teacher gets labels in words, not a metadata slot
    for variant in cfg.teacher.variants:
        if variant not in VARIANT_NAMES:
            raise ValueError(f"teacher.variants: unknown variant {variant!r} (known: {', '.join(VARIANT_NAMES)})")
    return templates


def generation_settings(cfg: DictConfig) -> dict[str, Any]:
    """What is stored with every reply, besides the prompt and the model id."""
    # the framing's version keys the cache beside the prompt tokens: a reworded framing is a new set of replies
    settings = {"max_new_tokens": int(cfg.teacher.max_new_tokens), "do_sample": bool(cfg.teacher.do_sample),
                "dtype": cfg.llm.dtype, "topk": int(cfg.teacher.topk), "framing": cfg.prompt.version}
    if cfg.teacher.do_sample:
        settings.update(temperature=1.0, seed=int(cfg.seed))
    return settings


def prompt_hash(model_id: str, settings: dict[str, Any], ids: list[int]) -> str:
    """Cache key of one generation: the same model, settings and prompt tokens give the same reply."""
    return hashlib.sha1(json.dumps([model_id, settings, ids], sort_keys=True).encode()).hexdigest()


@dataclass
class _Plan:
    """What pass 1 over the shards found: the unique prompts and, per clip, which prompt serves which entry."""

    prompts: dict[str, tuple[list[int], str]] = field(default_factory=dict)  # hash -> (ids, prompt text)
    entries: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)  # key -> (task, variant) -> hash
    shard_of: dict[str, Path] = field(default_factory=dict)  # key -> source shard
    clips: int = 0
    skipped: Counter = field(default_factory=Counter)


def in_share(key: str, share: float) -> bool:
    """Whether a clip is among the ``share`` of clips that get teacher replies (stable across runs and splits)."""
    return share >= 1.0 or zlib.crc32(key.encode()) % 10_000 < share * 10_000


def _plan(llm: FrozenLLM, prompter: ChatPrompter, shards: list[Path], templates: dict[str, str],
          variants: list[str], settings: dict[str, Any], share: float = 1.0) -> _Plan:
    plan = _Plan()
    checked: set[str] = set()
    for shard in tqdm(shards, desc="teacher prompts", unit="shard"):
        with open(shard, "rb") as f:
            for sample in iter_tar_samples(f):
                key = str(sample["__key__"])
                if "json" not in sample:
                    plan.skipped["no metadata"] += 1
                    continue
                if key in plan.shard_of:
                    raise ValueError(f"sample key {key!r} is in both {plan.shard_of[key].name} and {shard.name}")
                plan.shard_of[key] = shard
                plan.clips += 1
                meta = json.loads(sample["json"])
                if not (meta.get("transcript") or "").strip():
                    plan.skipped["no transcript"] += 1
                    continue
                if not in_share(key, share):
                    plan.skipped["outside teacher.share"] += 1
                    continue
                entries = plan.entries.setdefault(key, {})
                for task, template in templates.items():
                    if template not in checked:  # once per template: raises if the chat template splits badly
                        prompter.check_alignment(template, prompter.framing.teacher_text(meta, Variant.CONDITIONED))
                        checked.add(template)
                    for variant in variants:
                        ids = prompter.teacher_ids(template, meta, variant)
                        h = prompt_hash(llm.model_id, settings, ids)
                        if h not in plan.prompts:
                            said = prompter.framing.teacher_text(meta, variant)
                            plan.prompts[h] = (ids, prompter.render(template.replace("{speech}", said)))
                        entries[(task, variant)] = h
    return plan


# ---- the run -----------------------------------------------------------------------------------------------------
@dataclass
class TeacherSummary:
    clips: int = 0
    entries: int = 0  # (clip, task, variant) triples that asked for a reply
    unique_prompts: int = 0
    from_cache: int = 0
    generated: int = 0
    empty_replies: int = 0  # unique prompts whose reply was empty: no target stored for them
    empty_entries: int = 0
    generation_seconds: float = 0.0
    total_seconds: float = 0.0
    skipped: Counter = field(default_factory=Counter)

    @property
    def replies_per_s(self) -> float:
        return self.generated / self.generation_seconds if self.generation_seconds else 0.0

    def __str__(self) -> str:
        lines = [f"teacher: {self.clips} clips, {self.entries} replies asked, {self.unique_prompts} unique prompts "
                 f"({self.from_cache} from the cache, {self.generated} generated)",
                 f"  generation: {self.generation_seconds:.1f} s, {self.replies_per_s:.2f} replies/s; "
                 f"total {self.total_seconds:.1f} s"]
        if self.empty_replies:
            lines.append(f"  empty replies (not stored as targets): {self.empty_replies} prompts, "
                         f"{self.empty_entries} clip entries")
        lines += [f"  skipped clips, {reason}: {n}" for reason, n in self.skipped.most_common()]
        return "\n".join(lines)


def _generate_missing(llm: FrozenLLM, plan: _Plan, cache: dict[str, dict[str, Any]], cache_path: Path,
                      cfg: DictConfig, summary: TeacherSummary) -> None:
    todo = [h for h in plan.prompts if h not in cache]
    summary.from_cache = len(plan.prompts) - len(todo)
    t = cfg.teacher
    if t.do_sample:
        torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    with tqdm(total=len(plan.prompts), initial=summary.from_cache, desc="teacher replies", unit="prompt") as bar:
        todo_ids = [plan.prompts[h][0] for h in todo]
        for idx, reply_ids in generate_sorted(llm, todo_ids, t.batch_size, t.max_new_tokens, t.do_sample):
            hashes = [todo[i] for i in idx]
            prompts = [todo_ids[i] for i in idx]
            replies = [llm.prompter.tokenizer.decode(r, skip_special_tokens=True).strip() for r in reply_ids]
            new = {h: {"reply": r} for h, r in zip(hashes, replies)}
            kept = [j for j, r in enumerate(replies) if r]
            if t.topk > 0 and kept:
                topk = reply_topk(llm, [prompts[j] for j in kept],
                                  [llm.prompter.reply_ids(replies[j]) for j in kept], t.topk)
                for j, tk in zip(kept, topk):
                    new[hashes[j]]["topk"] = tk
            append_cache(cache_path, new)
            cache.update(new)
            summary.generated += len(hashes)
            bar.update(len(hashes))
    summary.generation_seconds = time.perf_counter() - start


class _ExistingTeacher:
    """The ``teacher.json`` a clip already holds, read one source shard at a time (rewrite_shards goes shard by
    shard), so a large corpus never sits in memory."""

    def __init__(self, shard_of: dict[str, Path]) -> None:
        self.shard_of = shard_of
        self.shard: Path | None = None
        self.members: dict[str, bytes] = {}

    def get(self, key: str) -> TeacherReplies:
        shard = self.shard_of[key]
        if shard != self.shard:
            with open(shard, "rb") as f:
                self.members = {str(s["__key__"]): s["teacher.json"] for s in iter_tar_samples(f)
                                if "teacher.json" in s}
            self.shard = shard
        raw = self.members.get(key)
        return TeacherReplies.from_json(json.loads(raw)) if raw else TeacherReplies()


def generate_teacher_replies(cfg: DictConfig, shard_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                             *, llm: FrozenLLM | None = None) -> TeacherSummary:
    """Generate (or take from the cache) the teacher reply of every clip x ``teacher.tasks`` x ``teacher.variants``
    in the shards of ``shard_dir`` and store them as ``<key>.teacher.json``, in place or into ``out_dir``.

    ``llm``: an already loaded frozen LLM (default: the recipe's, on the GPU when there is one).
    """
    begin = time.perf_counter()
    shards = shard_files(shard_dir)
    if not shards:
        raise FileNotFoundError(f"no <split>-NNNNNN.tar shards in {shard_dir}")
    out = Path(out_dir if out_dir is not None else shard_dir)
    out.mkdir(parents=True, exist_ok=True)
    templates = teacher_templates(cfg)
    if llm is None:
        from lightning_modules.speech_llm import load_frozen_llm

        llm = load_frozen_llm(cfg)
        if torch.cuda.is_available():
            llm.to("cuda")
    settings = generation_settings(cfg)
    if not 0.0 < cfg.teacher.share <= 1.0:
        raise ValueError(f"teacher.share={cfg.teacher.share} must be in (0, 1]")
    # the recipe's framing and system turn, also for an LLM loaded under another recipe
    prompter = ChatPrompter(llm.prompter.tokenizer, cfg.llm.system_prompt, Framing.from_recipe(cfg.prompt))
    plan = _plan(llm, prompter, shards, templates, list(cfg.teacher.variants), settings, cfg.teacher.share)
    summary = TeacherSummary(clips=plan.clips, unique_prompts=len(plan.prompts), skipped=plan.skipped,
                             entries=sum(len(e) for e in plan.entries.values()))
    cache_path = out / CACHE_NAME
    cache = read_cache(cache_path)
    _generate_missing(llm, plan, cache, cache_path, cfg, summary)
    summary.empty_replies = sum(1 for h in plan.prompts if not cache[h]["reply"])
    summary.empty_entries = sum(1 for e in plan.entries.values() for h in e.values() if not cache[h]["reply"])
    if summary.empty_replies:
        log.warning("%d of %d unique teacher prompts got an empty reply; %d clip entries have no teacher target",
                    summary.empty_replies, summary.unique_prompts, summary.empty_entries)
    existing = _ExistingTeacher(plan.shard_of)

    def add(chunk: list[tuple[str, dict]]) -> list[dict[str, bytes]]:
        added = []
        for key, _meta in chunk:
            entries = plan.entries.get(key)
            if not entries:  # a clip the teacher cannot serve keeps whatever it had
                added.append({})
                continue
            teacher = existing.get(key)
            for (task, variant), h in entries.items():
                reply = cache[h]
                # no reply, no target: a stale reply from another run must not stand in for it
                teacher.put(task, Variant(variant), TeacherReply(
                    reply["reply"], reply.get("topk"), plan.prompts[h][1], llm.model_id, settings)
                    if reply["reply"] else None)
            added.append({"teacher.json": json.dumps(teacher.to_json(), ensure_ascii=False).encode("utf-8")})
        return added

    rewrite_shards(shard_dir, out, add, batch_size=256)
    summary.total_seconds = time.perf_counter() - begin
    print(summary)
    return summary
