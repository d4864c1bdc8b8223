"""The side-by-side performance benchmark behind ``paralign bench``: each comparison is a pair of
medians over ``repeats`` and their ratio, in one run, on the models a recipe builds (default: the demo's).

Rows (a vs b, ratio = a / b):
- training step with the teacher's top-k cached in the shards vs an on-the-fly teacher pass per step, both CE + KL
  on the same examples, so the teacher pass is the only difference;
- the training step vs the floor: the frozen LLM alone, forward+backward to ``inputs_embeds`` at the same shapes
  (same batch, sequence lengths and label positions, LM head on the label positions only);
- padding ratio and loader throughput, length-bucketed vs plain batches (the recipe's shards when built);
- the loader alone vs what the training step consumes (audio-seconds/s, so clip lengths need not match);
- teacher generation, batched (the recipe's teacher batch size) vs one prompt at a time;
- peak memory of a training step vs the floor step;
- the Whisper encoder on a clip's real length vs padded to 30 s (and its conversion / load time);
- resampling from an odd rate: polyphase vs torchaudio's sinc.

The timed sides of a ratio take turns within each repeat, so a change in the machine's load (shared CPUs) hits
both alike. On a CPU shared with other work, two torch threads per process can make small ops (one-prompt decoding,
the encoder's) far slower than large ones; ``OMP_NUM_THREADS=1`` gives steadier ratios there.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import platform
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from clips.clip import Clip
from clips.examples import Batch, ExampleBuilder, collate
from clips.members import TeacherReplies, TeacherReply, Variant
from clips.tasks import build_tasks
from datamodules.features import LogMel, build_features
from lightning_modules.frozen_llm import FrozenLLM
from lightning_modules.speech_llm import SpeechLLM, load_frozen_llm
from paralign.benchmarks.timing import interleaved_timings
from prep.teacher import reply_topk

REPLY = "I can hear that you sound {emotion} as you say: {text}. Thank you for telling me how you feel today."
BENCH_EMOTIONS = ("neutral", "happy", "sad", "angry")
DEFAULT_TOPK = 8  # teacher top-k for the cached KL side when the recipe stores none (teacher.topk: 0)


def synthetic_clips(count: int, seconds: float, seed: int = 0, features: Callable | None = None,
                    sample_rate: int = 16000) -> list[Clip]:
    """Decoded clips as the loader yields them: ``features`` (the recipe's, from ``build_features``; default
    log-mel) of ``seconds`` of noise each, labels, and a teacher reply of a realistic length for the response task."""
    features = features or LogMel(sample_rate=sample_rate)
    samples = max(1, int(seconds * sample_rate))
    g = torch.Generator().manual_seed(seed)
    clips = []
    for i in range(count):
        emotion, text = BENCH_EMOTIONS[i % len(BENCH_EMOTIONS)], f"this is sentence number {i} of the benchmark"
        reply = REPLY.format(emotion=emotion, text=text)
        wave = 0.1 * torch.randn(samples, generator=g)
        teacher = TeacherReplies({"response": {v: TeacherReply(reply) for v in Variant}})
        clips.append(Clip(f"bench{i}", {"transcript": text, "emotion": emotion, "style": ["default"]}, seconds,
                          teacher, features=features(wave)))
    return clips


@torch.no_grad()
def add_teacher_topk(llm: FrozenLLM, clips: list[Clip], template: str, k: int) -> None:
    """Store in each clip's conditioned response entry the teacher's top-k (ids, log-probs) per reply token, from
    one pass of the frozen LLM over the text prompt, exactly as ``paralign teacher`` caches them in the shards."""
    prompts = [llm.prompter.teacher_ids(template, c.meta, Variant.CONDITIONED) for c in clips]
    entries = [c.teacher.get("response", Variant.CONDITIONED) for c in clips]
    targets = [llm.prompter.reply_ids(e.reply) for e in entries]
    for clip, entry, topk in zip(clips, entries, reply_topk(llm, prompts, targets, k)):
        clip.teacher.put("response", Variant.CONDITIONED, dataclasses.replace(entry, topk=topk))


def in_precision(fn: Callable[[], Any], precision: str, device: torch.device) -> Callable[[], Any]:
    """``fn`` under the autocast the trainer's ``*-mixed`` precision would use on a GPU (as is otherwise)."""
    if device.type != "cuda" or not precision.endswith("-mixed"):
        return fn
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16

    def run() -> Any:
        with torch.autocast("cuda", dtype=dtype):
            return fn()
    return run


def response_only(cfg: DictConfig, loss: str, kl_source: str = "cached") -> DictConfig:
    """``cfg`` with the response task alone enabled, with the given loss: both sides of the teacher comparison
    train on the same examples, so the only difference is the teacher pass."""
    if "response" not in cfg.tasks:
        raise ValueError("the recipe has no tasks.response: the teacher comparison needs it")
    variant = copy.deepcopy(cfg)
    for name in variant.tasks:
        variant.tasks[name].enabled = name == "response"
    variant.tasks.response.loss = loss
    variant.tasks.response.kl_source = kl_source
    return variant


def to_device(batch: Batch, device: torch.device) -> Batch:
    return dataclasses.replace(batch, features=batch.features.to(device), feature_lens=batch.feature_lens.to(device))


def build_batch(model: SpeechLLM, clips: list[Clip], device: torch.device) -> Batch:
    builder = ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True)
    rng = random.Random(0)
    return to_device(collate([e for c in clips for e in builder(c, rng)]), device)


def training_step_fn(model: SpeechLLM, batch: Batch) -> Callable[[], None]:
    """One optimizer step (forward, backward, AdamW) as the trainer runs it, minus Lightning's bookkeeping."""
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _, _, _ = model.losses(batch)
        loss.backward()
        optimizer.step()
    return step


def floor_step_fn(model: SpeechLLM, batch: Batch, share_opening: bool = True) -> Callable[[], None]:
    """The frozen LLM alone at the training step's shapes: forward from fixed ``inputs_embeds`` and backward of
    the CE on the same label positions (through the same ``label_logits``: the LM head only where a label is, as
    the training step computes it, so the ratio measures our overhead and nothing else). ``share_opening=False``:
    every row in full, the rows' shared opening (system turn, user header) included (``FrozenLLM.share_opening``)."""
    with torch.no_grad():
        speech, lens = model.speech_embeddings(batch.features, batch.feature_lens)
        inputs = model._spliced(batch, speech, lens, with_target=True)
    embeds = inputs["inputs_embeds"].detach()

    def step() -> None:
        x = embeds.clone().requires_grad_()
        before, model.llm.share_opening = model.llm.share_opening, share_opening
        try:
            logits, targets, _ = model.llm.label_logits(x, inputs["attention_mask"], inputs["position_ids"],
                                                        inputs["labels"])
        finally:
            model.llm.share_opening = before
        torch.nn.functional.cross_entropy(logits, targets).backward()
    return step


def _read_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mb(step: Callable[[], None], device: torch.device) -> tuple[float, str]:
    """Peak memory during one step in MB (absolute: the model's own weights included), and how it was measured.

    GPU: ``torch.cuda.max_memory_allocated`` (tensors only). CPU: the process's RSS high-water mark (VmHWM),
    reset first through ``/proc/self/clear_refs`` so that it covers this step alone; where that cannot be reset
    the figure is the process's lifetime peak and the method says so."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated (tensors)"
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
        method = "process RSS high-water mark (VmHWM, reset before the step)"
    except OSError:
        method = "process RSS high-water mark (VmHWM, lifetime peak: could not be reset)"
    step()
    return _read_status_kb("VmHWM") / 1024, method


def median_of(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def row(name: str, unit: str, a: str, a_value: float, b: str, b_value: float, target: str) -> dict[str, Any]:
    return {"name": name, "unit": unit, "a": a, "a_value": a_value, "b": b, "b_value": b_value,
            "ratio": a_value / b_value if b_value else None, "target": target}  # None: b is 0, no ratio


def recipe_train_shards(cfg: DictConfig) -> str | None:
    """The recipe's ``data.dir`` when it holds train shards (built by ``make data``), else None."""
    found = sorted(Path(cfg.data.dir).glob("train-*.tar")) if cfg.data.dir else []
    return str(cfg.data.dir) if found else None


def tiny_shards(out: Path, clips: int) -> Path:
    """A small shard set of tone clips (2/3 of them in the train split) for the loader rows."""
    from clips.shard_writer import write_shards
    from prep.tiny_corpus import tiny_records

    write_shards(tiny_records(out / "audio", clips), out / "shards", max_count=32, progress=False)
    return out / "shards"


def run_benchmark(cfg: DictConfig, *, batch_size: int = 8, seconds: float = 1.0, repeats: int = 3,
                  shards: str | None = None, shard_clips: int = 96, loader_samples: int = 320,
                  prompts: int | None = None, single_prompts: int = 8, bucket_window: int | None = None,
                  device: str | None = None, whisper: str | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement of the benchmark; returns ``{"machine", "settings", "rows", "details", "notes"}``.

    ``prompts`` (default: the recipe's ``teacher.batch_size``) are generated batched, ``single_prompts`` of them one
    at a time. The loader reads ``shards``, else the recipe's train shards, else ``shard_clips`` tone clips made
    here, up to ``loader_samples`` per pass. The bucketed loader side sorts ``bucket_window`` examples (default: the
    recipe's ``data.bucket_window`` when it buckets at all, else 64)."""
    if repeats < 1 or batch_size < 1 or seconds <= 0:
        raise ValueError("repeats and batch size must be at least 1 and seconds positive")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    notes: list[str] = []
    details: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []

    log(f"loading the frozen LLM ({cfg.llm.name}) on {dev}")
    llm: FrozenLLM = load_frozen_llm(cfg).to(dev)
    clips = synthetic_clips(batch_size, seconds, features=build_features(cfg), sample_rate=cfg.data.sample_rate)
    # Apples to apples: both sides train the response task with CE + KL against the same teacher; one reads the
    # teacher's top-k from the shards (computed here once, as `paralign teacher` does), the other runs the
    # teacher over the text prompt every step (Ultravox's way).
    k = int(cfg.teacher.topk) or DEFAULT_TOPK
    models, steps = {}, {}
    for name in ("cached", "online"):
        torch.manual_seed(cfg.seed)  # same encoder/adapter weights on both sides
        models[name] = SpeechLLM(response_only(cfg, "ce+kl", name), llm=llm).to(dev)
    add_teacher_topk(llm, clips, models["cached"].tasks["response"].instructions[0], k)
    precision = str(cfg.trainer.precision)
    for name, model in models.items():
        steps[name] = in_precision(training_step_fn(model, build_batch(model, clips, dev)), precision, dev)
    steps["floor"] = in_precision(floor_step_fn(models["cached"], build_batch(models["cached"], clips, dev)),
                                  precision, dev)
    steps["floor_full"] = in_precision(floor_step_fn(models["cached"], build_batch(models["cached"], clips, dev),
                                                     share_opening=False), precision, dev)
    audio_seconds = batch_size * seconds

    log(f"[1-3/8] cached-teacher step, online-teacher step and LLM floor (shared opening once, every row in "
        f"full), batch {batch_size} x {seconds:g} s, {repeats} interleaved repeats (+1 warm-up)")
    timings = interleaved_timings(steps, repeats)
    step_s = {k: statistics.median(v) for k, v in timings.items()}
    details["step_seconds"] = {k: {"median": step_s[k], "all": v} for k, v in timings.items()}
    # The same ratios within each repeat (its sides ran back to back): their spread shows how noisy the machine was.
    details["ratios_per_repeat"] = {
        "cached_vs_online_samples_per_s": [o / c for c, o in zip(timings["cached"], timings["online"])],
        "step_vs_floor": [c / f for c, f in zip(timings["cached"], timings["floor"])],
        "floor_full_vs_shared_opening": [a / b for a, b in zip(timings["floor_full"], timings["floor"])]}
    details["training"] = {"loss": "ce+kl (response task)", "topk": k, "precision": precision,
                           "audio_s_per_s": {k: audio_seconds / step_s[k] for k in ("cached", "online")}}
    train_sps = {k: batch_size / step_s[k] for k in ("cached", "online")}
    rows.append(row("teacher targets: cached vs on-the-fly", "samples/s", f"cached top-{k} (ce+kl)",
                    train_sps["cached"], "online teacher pass (ce+kl)", train_sps["online"], ">= 1.3"))
    rows.append(row("training step vs bare frozen-LLM floor", "s/step", "training step (cached)", step_s["cached"],
                    "LLM fwd+bwd to inputs_embeds", step_s["floor"], "<= 1.3"))
    rows.append(row("LLM fwd+bwd: every row in full vs the shared opening once", "s/step", "every row in full",
                    step_s["floor_full"], "shared opening once (the default)", step_s["floor"], ">= 1.1"))

    with tempfile.TemporaryDirectory(prefix="paralign-bench-") as tmp:
        source = shards or recipe_train_shards(cfg)
        described = source or f"{shard_clips} tiny tone clips (temporary)"
        source = source or str(tiny_shards(Path(tmp), shard_clips))
        log(f"[4/8] loader ({described}), bucketed vs plain, {cfg.data.num_workers} workers, {repeats} repeats")
        from paralign.benchmarks.loader import loader_benchmark

        # The recipe's own example building (tasks, prompt tokens) and collate, in the workers, as training runs.
        builder = ExampleBuilder(build_tasks(cfg.tasks), llm.prompter, cfg.data.examples_per_clip)
        window = bucket_window or (cfg.data.bucket_window if cfg.data.bucket_window > 1 else 64)
        runs = [loader_benchmark(source, cfg.data.num_workers, bucket_window=window,
                                 max_batch_seconds=cfg.data.max_batch_seconds, max_batch_size=cfg.data.max_batch_size,
                                 max_samples=loader_samples, example_builder=builder, collate=collate)
                for _ in tqdm(range(repeats), desc="loader", leave=False)]
    keys = ("samples_per_s", "audio_s_per_s", "padding_ratio", "startup_s")
    loader = {side: median_of([{k: r[side][k] for k in keys} for r in runs]) for side in ("bucketed", "plain")}
    details["loader"] = {"shards": described, **loader,
                         "batches": runs[0]["bucketed"]["batches"], "num_workers": cfg.data.num_workers,
                         "bucket_window": window,
                         "rates": "steady state, from the first batch on; startup_s is the workers' start-up"}
    rows.append(row("padding ratio: bucketed vs plain", "padded/total frames", "bucketed",
                    loader["bucketed"]["padding_ratio"], "plain", loader["plain"]["padding_ratio"],
                    "bucketed <= 0.15"))
    rows.append(row("loader throughput: bucketed vs plain", "samples/s", "bucketed",
                    loader["bucketed"]["samples_per_s"], "plain", loader["plain"]["samples_per_s"], ""))
    rows.append(row("loader alone vs training consumption", "audio-s/s", "loader (bucketed)",
                    loader["bucketed"]["audio_s_per_s"], "training step (cached)", audio_seconds / step_s["cached"],
                    ">= 5"))

    prompts = prompts or int(cfg.teacher.batch_size)
    single = min(prompts, single_prompts)
    log(f"[5/8] teacher generation, {prompts} prompts batched by {cfg.teacher.batch_size} vs {single} of them one "
        f"at a time, {repeats} repeats")
    try:
        from paralign.benchmarks.teacher import bench_prompts, teacher_throughput
    except ImportError as err:
        notes.append(f"teacher generation row left out: {err}")
    else:
        ids = bench_prompts(llm, prompts)
        gen = [teacher_throughput(llm, ids, cfg.teacher.batch_size, cfg.teacher.max_new_tokens, single)
               for _ in tqdm(range(repeats), desc="teacher", leave=False)]
        replies = {side: statistics.median(g[side]["replies_per_s"] for g in gen)
                   for side in ("batched", "one_at_a_time")}
        details["teacher"] = {**replies, "prompts": prompts, "one_at_a_time_prompts": single,
                              "batch_size": cfg.teacher.batch_size,
                              "max_new_tokens": cfg.teacher.max_new_tokens,
                              "identical_replies": [g["identical_replies"] for g in gen]}
        rows.append(row("teacher generation: batched vs one at a time", "replies/s", "batched", replies["batched"],
                        "one at a time", replies["one_at_a_time"], ">= 5"))

    log("[6/8] peak memory of a training step vs the floor step")
    memory = {name: peak_memory_mb(fn, dev) for name, fn in (("step", steps["cached"]), ("floor", steps["floor"]))}
    details["memory_method"] = memory["step"][1]
    rows.append(row("peak memory: training step vs floor", "MB", "training step (cached)", memory["step"][0],
                    "LLM fwd+bwd", memory["floor"][0], ""))

    whisper = whisper or (cfg.encoder.name if cfg.encoder.type == "whisper" else "whisper-base")
    log(f"[7/8] Whisper encoder ({whisper}): conversion from its wheel, load, one 3.3 s clip on its real length vs "
        f"padded to 30 s, {repeats} repeats")
    from paralign.benchmarks.whisper import whisper_timings

    timing = whisper_timings(whisper, max(repeats, 3), device=dev)
    details["whisper"] = timing
    rows.append(row(f"{whisper} encoder per clip: real length vs 30 s", "ms/clip", "real length (ours)",
                    1000 * timing["real_s"], "padded to 30 s (transformers)", 1000 * timing["padded_s"], "<= 0.2"))

    log(f"[8/8] resampling a 3 s clip from 24,414 Hz to 16 kHz: polyphase (ours) vs torchaudio's sinc, {repeats} "
        "repeats")
    resampling = resample_timings(repeats)
    details["resample"] = resampling
    rows.append(row("resampling 24,414 Hz -> 16 kHz, 3 s clip", "s/clip", "polyphase (ours)", resampling["polyphase"],
                    "torchaudio sinc", resampling["torchaudio"], "<= 0.1"))

    machine = {"host": platform.node(), "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "load_average": os.getloadavg(), "torch": torch.__version__}
    settings = {"recipe": cfg.name, "llm": cfg.llm.name, "batch_size": batch_size, "seconds": seconds,
                "repeats": repeats, "prompts": prompts, "loader_samples": loader_samples}
    return {"machine": machine, "settings": settings, "rows": rows, "details": details, "notes": notes}


def resample_timings(repeats: int, sr: int = 24414, seconds: float = 3.0) -> dict[str, float]:
    """Median seconds to resample one clip from an odd rate to 16 kHz, both ways, interleaved."""
    import torchaudio

    from clips.audio import resample

    wave = (0.1 * torch.randn(int(sr * seconds))).numpy()
    sides = {"polyphase": lambda: resample(wave, sr, 16000),
             "torchaudio": lambda: torchaudio.functional.resample(torch.from_numpy(wave), sr, 16000)}
    timings = interleaved_timings(sides, repeats)
    return {k: statistics.median(v) for k, v in timings.items()}


def format_table(report: dict[str, Any]) -> str:
    """The rows as a fixed-width text table (medians, ratio a/b, target)."""
    def num(x: float) -> str:
        return f"{x:.4g}"

    head = ("comparison", "unit", "a", "a", "b", "b", "a/b", "target")
    lines = [(r["name"], r["unit"], r["a"], num(r["a_value"]), r["b"], num(r["b_value"]),
              "n/a" if r["ratio"] is None else f"{r['ratio']:.3g}", r["target"]) for r in report["rows"]]
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i in (0, 1, 2, 4, 7) else '>'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), "  ".join("-" * w for w in widths), *(fmt.format(*x) for x in lines)]
    m = report["machine"]
    out.append(f"machine: {m['host']}, {m['device']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, "
               f"load average {', '.join(f'{x:.1f}' for x in m['load_average'])}")
    out.append(f"peak memory: {report['details']['memory_method']}")
    w = report["details"].get("whisper", {})
    if "convert_s" in w:
        out.append(f"{w['model']}: converted from its wheel in {w['convert_s']:.1f} s (once, then cached), loaded in "
                   f"{w['load_s']:.2f} s")
    out += [f"note: {n}" for n in report["notes"]]
    return "\n".join(out)
