"""Reply emotion accuracy: does a reply answer how it was said, the words held fixed?

A reply is assigned the emotion under whose cue the frozen LLM (the teacher) finds it likeliest: for a clip with
words w and a reply r, ``argmax_e log P(r | w, cue(e))`` over the corpus's emotions, with the prompt the teacher
uses (``Framing.text``) and the clip's own transcript in every candidate. The likelihood is used rather than the
nearest of six sampled teacher replies (sentence embeddings): it scores against the teacher's whole reply
distribution under each cue, needs no generation (six forward passes a reply), and a reply that echoes the words
gains nothing, since the words are the same under every cue.

Beside the model's figure, two controls scored the same way (both cached in the evaluation folder):
- **blind**: the LLM's reply to the words alone, no cue (chance is its floor: the same reply for every emotion);
- **ceiling**: a second, sampled teacher reply under the true cue (how well the measure can tell at all), on a
  stable subset of at most ``CEILING_CLIPS`` clips.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from clips.tasks import DEFAULT_INSTRUCTIONS
from clips.vocab import EMOTIONS
from lightning_modules.frozen_llm import FrozenLLM
from prep.jsonl_cache import append_cache, read_cache
from scoring import metrics as M

log = logging.getLogger(__name__)

TEMPLATE = DEFAULT_INSTRUCTIONS["response"][0]
CACHE_NAME = "reply_controls.jsonl"
CEILING_CLIPS = 96


@torch.no_grad()
def cue_loglik(llm: FrozenLLM, words: Sequence[str], replies: Sequence[str], emotions: Sequence[str],
               batch_size: int = 48) -> torch.Tensor:
    """``[len(replies), len(emotions)]``: log P(reply | its words with each emotion's cue) under the frozen LLM."""
    prompter = llm.prompter
    targets = [prompter.reply_ids(reply) for reply in replies]
    rows = [(i, k, prompter.reader_ids(TEMPLATE, words[i], emotions[k])) for i in range(len(replies))
            for k in range(len(emotions))]
    rows.sort(key=lambda row: len(row[2]) + len(targets[row[0]]))  # batches of like length: little padding
    out = torch.zeros(len(replies), len(emotions))
    for start in tqdm(range(0, len(rows), batch_size), desc="reply emotion: scoring", unit="batch",
                      disable=len(rows) <= batch_size):
        chunk = [(i, k) for i, k, _ in rows[start:start + batch_size]]
        prompts = [prompt for _, _, prompt in rows[start:start + batch_size]]
        logits, labels, which = llm.text_label_logits(prompts, [targets[i] for i, _ in chunk])
        token_lp = logits.log_softmax(-1).gather(-1, labels[:, None])[:, 0].cpu()
        totals = torch.zeros(len(chunk)).index_add_(0, which.cpu(), token_lp)
        for (i, k), value in zip(chunk, totals.tolist()):
            out[i, k] = value
    return out


def assign_emotions(llm: FrozenLLM, words: Sequence[str], replies: Sequence[str], emotions: Sequence[str],
                    cache_path: Path | None = None) -> list[str]:
    """The emotion whose cue makes each reply likeliest (words held fixed). Each distinct (words, reply) pair is
    scored once (the emotion-blind replies repeat per sentence); with ``cache_path``, its scores are kept there."""
    pairs = list(dict.fromkeys(zip(words, replies)))
    version = [llm.model_id, llm.prompter.framing.version, llm.prompter.system_prompt, list(emotions)]
    keys = {pair: _key(version, "score", *pair) for pair in pairs}
    cache = read_cache(cache_path) if cache_path is not None else {}
    todo = [pair for pair in pairs if keys[pair] not in cache]
    if todo:
        table = cue_loglik(llm, [w for w, _ in todo], [r for _, r in todo], emotions)
        new = {keys[pair]: {"best": emotions[k]} for pair, k in zip(todo, table.argmax(dim=1).tolist())}
        if cache_path is not None:
            append_cache(cache_path, new)
        cache.update(new)
    return [cache[keys[pair]]["best"] for pair in zip(words, replies)]


def _generate(llm: FrozenLLM, prompts: dict[str, list[int]], cache_path: Path, max_new_tokens: int,
              sample: dict[str, float] | None, desc: str) -> dict[str, str]:
    """Replies of the frozen LLM to ``prompts`` (cache key -> ids), taken from / appended to the cache."""
    from prep.teacher import generate_sorted

    cache = read_cache(cache_path)
    todo = [h for h in prompts if h not in cache]
    if todo:
        if sample:
            torch.manual_seed(int(sample["seed"]))
        for idx, reply_ids in tqdm(generate_sorted(llm, [prompts[h] for h in todo], 64, max_new_tokens,
                                                   do_sample=bool(sample),
                                                   temperature=(sample or {}).get("temperature", 1.0),
                                                   top_p=(sample or {}).get("top_p", 1.0)),
                                   desc=desc, unit="batch", total=-(-len(todo) // 64)):
            new = {todo[i]: {"reply": llm.prompter.tokenizer.decode(r, skip_special_tokens=True).strip()}
                   for i, r in zip(idx, reply_ids)}
            append_cache(cache_path, new)
            cache.update(new)
    return {h: cache[h]["reply"] for h in prompts}


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def control_replies(llm: FrozenLLM, items: list[dict], ceiling_items: list[dict], out: Path, max_new_tokens: int,
                    temperature: float, top_p: float, seed: int) -> tuple[list[str], list[str]]:
    """The words alone (greedy) for each of ``items``; a sampled reply under the true cue for each of
    ``ceiling_items``."""
    prompter, framing = llm.prompter, llm.prompter.framing
    version = [llm.model_id, framing.version, prompter.system_prompt, max_new_tokens]
    blind_prompts = {_key(version, "blind", it["transcript"]):
                     prompter.reader_ids(TEMPLATE, it["transcript"]) for it in items}
    sample = {"temperature": temperature, "top_p": top_p, "seed": seed}
    ceiling_prompts = {_key(version, "ceiling", sample, it["id"]):
                       prompter.reader_ids(TEMPLATE, it["transcript"], it["emotion"])
                       for it in ceiling_items}
    blind = _generate(llm, blind_prompts, out / CACHE_NAME, max_new_tokens, None, "reply emotion: blind control")
    ceiling = _generate(llm, ceiling_prompts, out / CACHE_NAME, max_new_tokens, sample,
                        "reply emotion: teacher ceiling")
    return ([blind[_key(version, "blind", it["transcript"])] for it in items],
            [ceiling[_key(version, "ceiling", sample, it["id"])] for it in ceiling_items])


def teacher_replies(llm: FrozenLLM, items: list[dict], out: Path, max_new_tokens: int) -> list[str]:
    """The teacher's greedy reply to each item's words under its emotion's cue (what the model aims at)."""
    prompter, framing = llm.prompter, llm.prompter.framing
    version = [llm.model_id, framing.version, prompter.system_prompt, max_new_tokens]
    keys = [_key(version, "teacher", it["transcript"], it["emotion"]) for it in items]
    prompts = {k: prompter.reader_ids(TEMPLATE, it["transcript"], it["emotion"])
               for k, it in zip(keys, items)}
    replies = _generate(llm, prompts, out / CACHE_NAME, max_new_tokens, None, "teacher replies")
    return [replies[k] for k in keys]


def reply_emotion_metrics(llm: FrozenLLM, records: Sequence[dict], out: Path, *, max_new_tokens: int,
                          temperature: float, top_p: float, seed: int, n_boot: int = 1000) -> dict[str, Any] | None:
    """Reply emotion accuracy of the response task's replies, with the blind and ceiling controls (each with a
    95 % bootstrap interval); None when no response reply has an emotion label and a transcript."""
    items = [r for r in records if r.get("task") == "response" and r.get("emotion") in EMOTIONS
             and (r.get("transcript") or "").strip()]
    if not items:
        return None
    emotions = [e for e in EMOTIONS if any(it["emotion"] == e for it in items)]
    if len(emotions) < 2:
        return None
    # the ceiling on a stable subset: a reference for the measure, not the model, and generating and scoring a
    # sampled reply per clip is the dearest part of the evaluation on a CPU
    ceiling_items = sorted(items, key=lambda it: _key("ceiling-subset", it["id"]))[:CEILING_CLIPS]
    blind, ceiling = control_replies(llm, items, ceiling_items, out, max_new_tokens, temperature, top_p, seed)
    result: dict[str, Any] = {"emotions": emotions, "chance": 1 / len(emotions), "n": len(items),
                              "method": "frozen-LLM likelihood of the reply under each emotion's cue"}
    predicted: dict[str, list[str]] = {}
    for name, scored, replies in (("model", items, [it["reply"] for it in items]), ("blind", items, blind),
                                  ("ceiling", ceiling_items, ceiling)):
        predicted[name] = assign_emotions(llm, [it["transcript"] for it in scored], replies, emotions,
                                          out / CACHE_NAME)
        correct = [float(p == it["emotion"]) for p, it in zip(predicted[name], scored)]
        result[name] = M.bootstrap_ci(correct, n=n_boot, seed=seed)
    truth = [it["emotion"] for it in items]
    result["confusion"] = M.confusion_matrix(predicted["model"], truth, emotions)
    result["examples"] = [{"id": it["id"], "emotion": it["emotion"], "reply": it["reply"], "assigned": p,
                           "blind": b} for it, p, b in list(zip(items, predicted["model"], blind))[:6]]
    log.info("reply emotion accuracy %.3f (blind %.3f, ceiling %.3f, chance %.3f, n=%d)", result["model"]["value"],
             result["blind"]["value"], result["ceiling"]["value"], result["chance"], len(items))
    return result


def framing_check(cfg, split: str, sentences: int, out: Path) -> dict[str, Any]:
    """The recipe's framing on text alone: the teacher's greedy reply to each of the first ``sentences``
    sentences of ``split`` (in ``data.dir``) under each emotion of the corpus as the cue, scored by
    :func:`reply_emotion_metrics` (its controls: the words alone, a sampled reply), and the share of replies that
    talk about "the speaker" rather than to them."""
    from clips.shard_writer import iter_shard_metadata, shard_files
    from lightning_modules.speech_llm import load_frozen_llm

    shards = shard_files(cfg.data.dir, split)
    if not shards:
        raise FileNotFoundError(f"no {split} shards in data.dir={cfg.data.dir}: build them (paralign data)")
    texts: list[str] = []
    emotions: set[str] = set()
    for _, meta in iter_shard_metadata(shards):
        if meta.get("emotion") in EMOTIONS:
            emotions.add(meta["emotion"])
        if (meta.get("transcript") or "").strip() and meta["transcript"] not in texts:
            texts.append(meta["transcript"])
    items = [{"id": f"{i}-{e}", "transcript": t, "emotion": e}
             for i, t in enumerate(texts[:sentences]) for e in EMOTIONS if e in emotions]
    llm = load_frozen_llm(cfg).eval()
    out.mkdir(parents=True, exist_ok=True)
    g = cfg.generation
    replies = teacher_replies(llm, items, out, g.max_new_tokens)
    records = [dict(it, task="response", reply=r) for it, r in zip(items, replies)]
    result = reply_emotion_metrics(llm, records, out, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                                   top_p=g.top_p, seed=cfg.seed)
    if result is None:
        raise ValueError(f"the {split} split has fewer than two emotions with transcripts")
    result["speaker_commentary"] = sum("speaker" in r.lower() for r in replies) / len(replies)
    result["framing"] = {"system": llm.prompter.system_prompt, "example": llm.prompter.framing.text(texts[0], "sad"),
                         "version": llm.prompter.framing.version}
    result["examples"] = [dict(it, reply=r) for it, r in zip(items, replies)][:2 * len(emotions)]
    return result
