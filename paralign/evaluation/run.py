"""``paralign eval``: replies from speech for every test clip and task, scored into ``<run>/eval/``.

Generations are appended to ``eval/generations.jsonl`` batch by batch, so a cut evaluation of the same model
continues where it stopped; the file is keyed to the model it holds the replies of (``model_fingerprint``), so
another checkpoint, or the run trained further, is evaluated afresh. The linear probe uses mean-pooled speech
tokens of the same clips (split in halves by clip id).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from clips.examples import Batch
from clips.members import Variant
from clips.tasks import Task
from clips.vocab import LABEL_SETS
from datamodules.datamodule import ShardDataModule
from lightning_modules.speaker_norm import speakers_of
from lightning_modules.speech_llm import SpeechLLM
from paralign.data import shard_sources
from paralign.evaluation.answer_likelihood import answer_logprobs
from paralign.model_folder import load_trained
from paralign.perceive import known_answers, perceived_emotions
from paralign.speaker_statistics import prepare_evaluation
from scoring.probe import Pooled, head_accuracy, probe_accuracy

log = logging.getLogger(__name__)
# What a generation record holds; a cut evaluation's records of an older version are made afresh (2: the emotion
# task's records carry the likelihood of each emotion's answer, ``answer_logp``)
RECORDS_VERSION = 2


def reference_tasks(cfg: DictConfig, tasks: dict[str, Task]) -> dict[str, Task]:
    """The tasks as evaluation sees them: teacher targets from ``eval.reference_variant`` for every system."""
    variant = Variant(cfg.eval.reference_variant)
    return {name: dataclasses.replace(t, teacher_variant=variant) if t.target == "teacher" else t
            for name, t in tasks.items()}


def split_source(cfg: DictConfig, split: str) -> list:
    """Where an evaluation reads ``split``: the recipe's test sources for the test split, else ``data.dir``."""
    return shard_sources(cfg)["test"] if split == "test" else [cfg.data.dir]


def split_loader(cfg: DictConfig, model: SpeechLLM, split: str, tasks: list[str] | None = None,
                 need_target: bool = True):
    """A deterministic loader over one split, one example per (clip, task); ``need_target=False``: also the
    tasks a clip has no reference for (replies only)."""
    chosen = {n: t for n, t in reference_tasks(cfg, model.tasks).items() if not tasks or n in tasks}
    dm = ShardDataModule.from_recipe(cfg, model.tasks, model.llm.prompter, eval_tasks=chosen,
                                     need_target=need_target, test=split_source(cfg, split), test_split=split)
    return dm.test_dataloader()


@torch.no_grad()
def cascade_replies(model: SpeechLLM, batch: Batch, with_labels: bool) -> list[str]:
    """A cascade reference: the clip's words (Whisper's, or the corpus's: ``prompt.transcripts``) and, with
    ``with_labels``, the cue of its true emotion and style, typed into the speech slot of the same prompt
    (``ChatPrompter.cascade_ids``; never a perceived cue), generated with the same settings as the speech model."""
    llm = model.llm
    if any(w is None for w in batch.words):
        raise ValueError("a cascade reads Whisper's transcripts (<key>.asr.json, made by `paralign data`); these "
                         "shards have none: run `paralign data`, or set prompt.transcripts=corpus")
    labels = [(meta.get("emotion"), meta.get("style")) if with_labels else (None, None) for meta in batch.meta]
    rows = [llm.prompter.cascade_ids(template, words, *cue) for template, words, cue in
            zip(batch.template, batch.words, labels)]
    g = model.cfg.generation
    return llm.generate_text(rows, max_new_tokens=g.max_new_tokens, do_sample=g.do_sample, temperature=g.temperature,
                             top_p=g.top_p)


def generation_records(model: SpeechLLM, batch: Batch, cascade: str = "none",
                       answered: dict[tuple[str, str], str] | None = None) -> list[dict[str, Any]]:
    """One record per example: the reply (from speech, or from words for a cascade) beside its reference.
    ``answered``: the model's answers to the emotion question so far (``perceive.known_answers``)."""
    perceived: list[str | None] = [None] * len(batch.keys)
    if cascade == "none":
        # prompt.perceive: the emotion the model names first
        perceived = perceived_emotions(model, batch, answered=answered)
        replies = model.generate(batch, cues=perceived)
    else:
        replies = cascade_replies(model, batch, with_labels=cascade == "transcript+labels")
    records = []
    for i, reply in enumerate(replies):
        meta = batch.meta[i]
        records.append({
            "id": batch.keys[i], "task": batch.task[i], "prompt": batch.template[i], "reply": reply,
            "reference": batch.target_text[i], "emotion": meta.get("emotion"), "style": meta.get("style") or [],
            "transcript": meta.get("transcript"), "heard": batch.words[i], "speaker": meta.get("speaker"),
            "question_type": batch.question_type[i],
            "perceived": perceived[i],
        })
    return records


def model_fingerprint(cfg: DictConfig, model: SpeechLLM) -> str:
    """What an evaluation's replies depend on: the trained weights (hashed; a cascade has none, it reads words) and
    the recipe's parts that shape a prompt, a reference or a reply. Cached replies are reused only under the same
    fingerprint."""
    digest = hashlib.sha256()
    if cfg.eval.cascade == "none":
        frozen = model.frozen_keys()
        for name, value in sorted(model.state_dict().items()):
            if name not in frozen:
                flat = value.detach().cpu().contiguous().view(-1)
                digest.update(f"{name}:{flat.dtype}:{tuple(value.shape)}".encode())
                digest.update(flat.view(torch.uint8).numpy().tobytes())
    shaping = {key: OmegaConf.to_container(cfg[key], resolve=True)
               for key in ("llm", "encoder", "adapter", "tasks", "generation", "prompt") if key in cfg}
    shaping["data"] = {key: cfg.data[key] for key in ("dir", "sample_rate", "features", "trim_silence_db")}
    if cfg.data.get("level_dbfs") is not None:  # only where set: earlier evaluations keep their fingerprint
        shaping["data"]["level_dbfs"] = cfg.data.level_dbfs
    shaping["eval"] = {key: cfg.eval[key] for key in ("split", "reference_variant", "cascade")}
    shaping["records"] = RECORDS_VERSION
    digest.update(json.dumps(shaping, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def cached_generations(out: Path, fingerprint: str, source: str) -> list[dict]:
    """The replies an earlier, cut evaluation of this very model left in ``out/generations.jsonl``; replies of any
    other model (another checkpoint of the run, the run trained further, another recipe) are discarded, said in
    one line. ``generations.model.json`` records whose replies the file holds."""
    gen_path, owner_path = out / "generations.jsonl", out / "generations.model.json"
    owner = _owner(out)
    records = _read_jsonl(gen_path)
    if records and owner.get("fingerprint") != fingerprint:
        log.warning("%s holds the replies of another model (%s): starting afresh for %s", gen_path,
                    owner.get("source", "unrecorded"), source)
        records = []
    elif records:
        log.info("continuing %s: %d replies of this model are there already", gen_path, len(records))
    # Rewritten whole: drops what another model wrote, and a line an interrupted write left cut
    gen_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    owner_path.write_text(json.dumps({"fingerprint": fingerprint, "source": source}) + "\n")
    return records


def replies_of(out: Path, fingerprint: str) -> list[dict]:
    """The records ``out/generations.jsonl`` holds of the model with ``fingerprint`` (none if another's)."""
    return _read_jsonl(out / "generations.jsonl") if _owner(out).get("fingerprint") == fingerprint else []


def _owner(out: Path) -> dict:
    """Whose replies ``out/generations.jsonl`` holds (``generations.model.json``; empty if unrecorded)."""
    try:
        return json.loads((out / "generations.model.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: dropping a truncated line (an interrupted write); it will be regenerated", path)
    return rows


def probe_accuracies(pooled: Pooled, fit_on: Pooled | None = None) -> dict[str, float | None]:
    """Linear-probe accuracy per label kind (scoring/probe.py): fitted on ``fit_on`` (e.g. the train split) and
    scored on every clip of ``pooled``, or fitted on one half of ``pooled`` and scored on the other."""
    return {kind: probe_accuracy(kind, pooled, fit_on) for kind in LABEL_SETS}


def evaluate(cfg: DictConfig, ckpt: str | Path | None, run_dir: str | Path | None = None,
             model: SpeechLLM | None = None, out_name: str = "eval", title: str | None = None) -> dict[str, Any]:
    """Generate, score and report; returns the metrics dict (also in ``<run>/<out_name>/metrics.json``).

    ``ckpt`` None: a cascade reference (``eval.cascade``), the frozen LLM reading words; ``run_dir`` is then needed.
    """
    from paralign.evaluation.figures import compute_metrics
    from paralign.evaluation.reply_emotion import reply_emotion_metrics
    from paralign.evaluation.report import write_report

    cascade = cfg.eval.cascade
    if (ckpt is None) != (cascade != "none"):
        raise ValueError("a cascade reference (eval.cascade) is evaluated without a checkpoint; a trained model "
                         "needs one")
    if run_dir is None and ckpt is None:
        raise ValueError("a cascade evaluation needs run_dir")
    run_dir = Path(run_dir) if run_dir else Path(ckpt).resolve().parents[1]
    out = run_dir / out_name
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = SpeechLLM(cfg).eval() if ckpt is None else load_trained(cfg, ckpt)
    gen_path = out / "generations.jsonl"
    fingerprint = model_fingerprint(cfg, model)
    source = str(ckpt) if ckpt else f"cascade: {cascade}"
    records = cached_generations(out, fingerprint, source)
    done = {(r["id"], r["task"]) for r in records}
    pooled: dict[str, tuple[torch.Tensor, dict]] = {}
    # One pass per task: a batch of one task stops generating when its replies end (an emotion answer is a few
    # tokens, a response many), where mixed batches would all run as long as their longest reply. The emotion task
    # first: its greedy answers are those the perceive step of the response task would generate again.
    tasks = sorted((n for n in model.tasks if not cfg.eval.tasks or n in cfg.eval.tasks), key=lambda n: n != "emotion")
    # every task asks about the same clips: each clip's speech tokens are made once (a cascade makes none)
    read = [cfg.eval.split] + (["train"] if cfg.eval.probe_fit == "train" else [])
    prepare_evaluation(cfg, model, [(split_source(cfg, split), split) for split in read])  # encoder.speaker_norm
    # perceive's question, answered by the emotion task already (perceive asks greedily: not sampled answers)
    reuse = model.llm.prompter.framing.perceive and not cfg.generation.do_sample
    with gen_path.open("a") as sink, torch.no_grad(), model.remembering_speech() as memo:
        for task in tasks:
            clips_seen: set[str] = set()
            # every clip gets a response (the reply emotion measure needs no cached teacher reply; ROUGE-L and
            # similarity are scored where one exists)
            loader = split_loader(cfg, model, cfg.eval.split, [task], need_target=task != "response")
            closed_set = cascade == "none" and task == "emotion" and model.tasks[task].target == "label"
            answered = known_answers(model, records) if task == "response" and reuse else None
            for batch in tqdm(loader, desc=f"evaluating {task}", unit="batch"):
                if cascade == "none":  # the probe's pooled tokens, once per clip (a cascade has none)
                    speech, lens = model.speech_embeddings(batch.features, batch.feature_lens, speakers_of(batch.meta))
                    for key, vec, meta in zip(batch.keys, SpeechLLM.pool(speech, lens), batch.meta):
                        pooled.setdefault(key, (vec.float(), meta))
                clips_seen.update(batch.keys)
                if not all((k, t) in done for k, t in zip(batch.keys, batch.task)):
                    new = generation_records(model, batch, cascade, answered)
                    if closed_set:  # the likelihood of each emotion's answer after the same prompt
                        for rec, logp in zip(new, answer_logprobs(model, batch, model.tasks[task])):
                            rec["answer_logp"] = logp
                    for rec in new:
                        sink.write(json.dumps(rec) + "\n")
                    sink.flush()
                    records += new
                    done.update((r["id"], r["task"]) for r in new)
                if cfg.eval.max_clips and len(clips_seen) >= cfg.eval.max_clips:
                    break
    if memo.made:
        log.info("speech tokens: made for %d clips, reused %d times", memo.made, memo.reused)
    judge = build_judge(cfg, model, out / "judge_cache.jsonl")
    metrics = compute_metrics(records, judge=judge)
    fit_on = pooled_tokens(cfg, model, "train") if cfg.eval.probe_fit == "train" and pooled else None
    g = cfg.generation
    reply = reply_emotion_metrics(model.llm, records, out, max_new_tokens=g.max_new_tokens,
                                  temperature=g.temperature, top_p=g.top_p, seed=cfg.seed)
    if reply:  # in the response task's table (report, eval-compare, the end-of-training print)
        # a corpus without teacher replies (real speech) has no ROUGE/similarity row for the task: start one
        response = metrics["tasks"].setdefault("response", {"n": 0, "metrics": {}})
        response["metrics"].update(reply_emotion_accuracy=reply["model"], reply_emotion_blind=reply["blind"],
                                   reply_emotion_ceiling=reply["ceiling"])
        metrics["reply_emotion"] = reply
    metrics["probe"] = probe_accuracies(pooled, fit_on)
    if pooled:  # the model's own heads on the same tokens (a cascade has none)
        metrics["heads"] = {kind: head_accuracy(kind, head, pooled) for kind, head in model.classifiers.items()}
        closed = (metrics["tasks"].get("emotion") or {}).get("closed_set")
        if closed and "emotion" in model.classifiers:  # the head over the same closed set as the LLM's likelihoods
            metrics["heads_closed_set"] = {"emotion": head_accuracy("emotion", model.classifiers["emotion"], pooled,
                                                                    among=closed["labels"])}
    if pooled:  # a cascade has no speech tokens to probe
        metrics["probe"]["fitted_on"] = "train split" if fit_on is not None else "half of the evaluated clips"
    metrics["checkpoint"] = str(ckpt) if ckpt else f"none (cascade: {cascade})"
    metrics["model_fingerprint"] = fingerprint
    metrics["recipe"] = cfg.name
    write_report(out, metrics, records, title=title or f"Evaluation of {cfg.name} ({cfg.eval.split} split)")
    log.info("evaluation written to %s", out)
    return metrics


@torch.no_grad()
def pooled_tokens(cfg: DictConfig, model: SpeechLLM, split: str) -> dict[str, tuple[torch.Tensor, dict]]:
    """Mean-pooled speech tokens of every clip of ``split`` of ``data.dir`` (the probe's fitting set)."""
    pooled: dict[str, tuple[torch.Tensor, dict]] = {}
    loader = ShardDataModule.clips_of(cfg, [cfg.data.dir], split).test_dataloader()
    for batch in tqdm(loader, desc=f"probe: pooling the {split} split", unit="batch"):
        # clips, not examples: the loader's default collate (``datamodules.batching.pad_features``), a dict
        speech, lens = model.speech_embeddings(batch["features"].to(model.device),
                                               batch["feature_lens"].to(model.device), speakers_of(batch["meta"]))
        for key, vec, meta in zip(batch["keys"], SpeechLLM.pool(speech, lens), batch["meta"]):
            pooled[key] = (vec.float().cpu(), meta)
    return pooled


def showcase_records(cfg: DictConfig, model: SpeechLLM, out: Path) -> list[dict[str, Any]]:
    """Response-task replies for the showcase split (the same sentences spoken in several emotions), each with
    the teacher's reply to its words under its emotion's cue (``teacher``: what the model aims at). Where the
    showcase is the evaluated split (``eval.split``), the evaluation's replies of this model in ``out`` are taken,
    not generated again."""
    from paralign.evaluation.reply_emotion import teacher_replies

    records: list[dict[str, Any]] = []
    split = cfg.eval.showcase_split
    replied = {}
    if split == cfg.eval.split:
        replied = {r["id"]: r for r in replies_of(out, model_fingerprint(cfg, model)) if r["task"] == "response"}
    prepare_evaluation(cfg, model, [(split_source(cfg, split), split)])  # encoder.speaker_norm
    with torch.no_grad():
        # replies only: a showcase clip needs no cached teacher reply (teacher.share may leave it out)
        for batch in split_loader(cfg, model, split, ["response"], need_target=False):
            if all(key in replied for key in batch.keys):
                records += [dict(replied[key]) for key in batch.keys]
            else:
                records += generation_records(model, batch)
        labelled = [r for r in records if r.get("emotion") and r.get("transcript")]
        for r, reply in zip(labelled, teacher_replies(model.llm, labelled, out, cfg.generation.max_new_tokens)):
            r["teacher"] = reply
    return records


def build_judge(cfg: DictConfig, model: SpeechLLM, cache_path: Path):
    """The recipe's judge: none, the frozen LLM itself as a local judge, or an OpenAI-compatible endpoint."""
    if cfg.eval.judge == "none":
        return None
    from paralign.evaluation.judge import LocalJudge, OpenAIJudge

    if cfg.eval.judge == "openai":
        if not (cfg.eval.judge_base_url and cfg.eval.judge_model):
            raise ValueError("eval.judge=openai needs eval.judge_base_url and eval.judge_model")
        return OpenAIJudge(cfg.eval.judge_base_url, cfg.eval.judge_model, cache_path=cache_path)
    return LocalJudge(model.llm.model, model.llm.prompter.tokenizer, mode=cfg.eval.judge_mode,
                      cache_path=cache_path)
