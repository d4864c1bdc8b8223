"""Teacher generation throughput: our batched, length-sorted, left-padded generation vs one prompt at a time, on
the same prompts with the same ``max_new_tokens``: ``paralign bench --part teacher``."""
from __future__ import annotations

import time
from typing import Any

import torch

from clips.tasks import DEFAULT_INSTRUCTIONS
from clips.vocab import EMOTIONS
from lightning_modules.frozen_llm import FrozenLLM
from prep.sentences import load_sentences
from prep.teacher import generate_batch, generate_sorted


def bench_prompts(llm: FrozenLLM, count: int, template: str = DEFAULT_INSTRUCTIONS["response"][0]) -> list[list[int]]:
    """``count`` emotion-conditioned teacher prompts: sentences of the synthetic corpus's bank, emotions in turn."""
    sentences = load_sentences()
    emotions = EMOTIONS[:5]
    return [llm.prompter.reader_ids(template, sentences[i % len(sentences)].text, emotions[i % len(emotions)])
            for i in range(count)]


def _timed(run) -> tuple[list[list[int]], float]:
    start = time.perf_counter()
    replies = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return replies, time.perf_counter() - start


def teacher_throughput(llm: FrozenLLM, prompts: list[list[int]], batch_size: int, max_new_tokens: int = 48,
                       single: int = 0) -> dict[str, Any]:
    """Replies/s of batched generation vs one prompt at a time (greedy, so both should give the same replies;
    ``identical_replies`` counts those that do, of ``compared``).

    ``single > 0`` times one-at-a-time generation on that many prompts only, evenly spaced over ``prompts`` (its
    rate per reply does not depend on how many there are; the batched rate does, so that side gets all of them)."""
    generate_batch(llm, prompts[:1], 2)  # warm-up: first-call allocations are no part of either figure
    picked = list(range(0, len(prompts), max(1, len(prompts) // single)))[:single] if single else \
        list(range(len(prompts)))

    def batched() -> list[list[int]]:
        replies: list[list[int]] = [[] for _ in prompts]
        for idx, out in generate_sorted(llm, prompts, batch_size, max_new_tokens):
            for i, r in zip(idx, out):
                replies[i] = r
        return replies

    many, many_s = _timed(batched)
    one, one_s = _timed(lambda: [generate_batch(llm, [prompts[i]], max_new_tokens)[0] for i in picked])

    def figures(replies: list[list[int]], seconds: float) -> dict[str, float]:
        tokens = sum(map(len, replies))
        return {"replies": len(replies), "seconds": round(seconds, 3),
                "replies_per_s": round(len(replies) / seconds, 3), "reply_tokens_per_s": round(tokens / seconds, 1)}

    batched_fig, single_fig = figures(many, many_s), figures(one, one_s)
    return {"prompts": len(prompts), "batch_size": batch_size, "max_new_tokens": max_new_tokens,
            "device": str(llm.model.device), "threads": torch.get_num_threads(),
            "batched": batched_fig, "one_at_a_time": single_fig,
            "speedup": round(batched_fig["replies_per_s"] / single_fig["replies_per_s"], 2),
            "identical_replies": sum(many[i] == r for i, r in zip(picked, one)), "compared": len(picked)}
