"""``paralign bench --part serve``: replies per second of ``paralign serve`` with 1 and with N concurrent clients,
requests batched against one at a time (``max_batch`` 1), side by side in one run.

Each client is the ``openai`` Python client in a thread of this process, sending the same real-format request a
user's application would (a wav as an ``input_audio`` part) to the server running in another thread; the figures
include HTTP, base64, decoding and the model. Every setting answers the same requests, greedy, with the same
``max_new_tokens``, so the work per request is the same and only the scheduling differs.
"""
from __future__ import annotations

import base64
import io
import threading
import time
from typing import Any

import numpy as np
import soundfile as sf

from paralign.infer import Answerer
from paralign.serve import Limits, create_app, serving_in_thread


def bench_clips(n: int, seconds: float, sample_rate: int = 16000) -> list[bytes]:
    """``n`` distinct wav files of ``seconds`` (a voiced tone with vibrato and noise: every clip decodes, none is
    silent)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    clips = []
    for i in range(n):
        f0 = 110 + 15 * i + 8 * np.sin(2 * np.pi * 5 * t)
        wave = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sample_rate) + 0.01 * rng.standard_normal(t.size)
        buffer = io.BytesIO()
        sf.write(buffer, wave.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
        clips.append(buffer.getvalue())
    return clips


def _request(clip: bytes) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(clip).decode(), "format": "wav"}}]}]


def _replies_per_second(url: str, clients: int, per_client: int, clips: list[bytes]) -> float:
    import openai

    errors: list[BaseException] = []

    def client(k: int) -> None:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=600)
        try:
            for j in range(per_client):
                api.chat.completions.create(model="bench", messages=_request(clips[(k * per_client + j) % len(clips)]))
        except BaseException as err:  # reported after the threads end, not lost in one
            errors.append(err)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"a benchmark request failed: {errors[0]}")
    return clients * per_client / elapsed


def serve_benchmark(answerer: Answerer, concurrency: tuple[int, ...] = (1, 8), per_client: int = 2,
                    max_batch: int = 8, window_ms: float = 20.0, seconds: float = 2.0) -> dict[str, Any]:
    """``{"rows": [{"clients", "one_at_a_time", "batched", "ratio", "batch_sizes"}], "settings": ...}``; a warm-up
    request first (lazy initialisation is not a serving cost)."""
    clips = bench_clips(max(concurrency) * per_client, seconds, answerer.cfg.data.sample_rate)
    rows = []
    for clients in concurrency:
        row: dict[str, Any] = {"clients": clients}
        for name, batch in (("one_at_a_time", 1), ("batched", max_batch)):
            app = create_app(answerer, "bench", Limits(max_batch=batch, batch_window_ms=window_ms))
            with serving_in_thread(app) as url:
                _replies_per_second(url, 1, 1, clips)  # warm-up
                app.state.batcher.batches.clear()
                row[name] = _replies_per_second(url, clients, per_client, clips)
                if batch > 1:
                    row["batch_sizes"] = list(app.state.batcher.batches)
        row["ratio"] = row["batched"] / row["one_at_a_time"]
        rows.append(row)
    return {"rows": rows, "settings": {"per_client": per_client, "max_batch": max_batch, "window_ms": window_ms,
                                       "clip_seconds": seconds, "generation": answerer.generation}}


def format_serve(report: dict[str, Any], model: str, device: str) -> str:
    s = report["settings"]
    lines = [f"serve: {model} on {device}; {s['clip_seconds']:g} s clips, {s['per_client']} requests per client, "
             f"greedy {s['generation']}, batches of up to {s['max_batch']} within {s['window_ms']:g} ms",
             f"  {'clients':>7}  {'one at a time':>14}  {'batched':>10}  {'ratio':>6}  batch sizes"]
    for row in report["rows"]:
        lines.append(f"  {row['clients']:>7}  {row['one_at_a_time']:>10.2f} r/s  {row['batched']:>6.2f} r/s  "
                     f"{row['ratio']:>5.2f}x  {row.get('batch_sizes')}")
    return "\n".join(lines)
