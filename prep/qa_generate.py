"""Method 2 (implicit): LLM-generated question-answer pairs about each clip, stored as ``<key>.qa.json``.

An LLM (a local transformers model or an OpenAI-compatible endpoint) gets each clip's transcript with its
categorical and dimensional emotion annotations through a versioned prompt template
(``prep/prompts/qa_generate_<version>.txt``) and answers with a JSON list of pairs mixing content questions
and questions that need the emotion in context. Two template formats:

- a JSON template (``{pairs}`` in it, ``v1``): one prompt per clip asks for a JSON list of typed pairs, what an
  endpoint model does well;
- a line template (``{instruction}`` in it, ``v2``): one prompt per clip asks for one pair of one question type
  (content or content+emotion, alternating by clip) as ``Question: ...`` / ``Answer: ...`` lines. With
  ``reply_prefix: "Question:"`` the local model's reply starts there; SmolLM2-135M follows this and copies the JSON
  template's example instead of answering it.

Replies are parsed, validated, deduplicated and filtered; every
rejection is counted by reason. Raw replies are cached in ``qa_cache.jsonl`` in the output folder (a cut run
resumes without asking again, and a change of filters re-parses without regenerating). The pairs go into new
shards: ``<key>.qa.json`` is the list of kept pairs, each with the prompt version and the generator it came from.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig
from tqdm import tqdm

from clips.shard_writer import iter_shard_metadata, rewrite_shards, shard_files
from clips.vocab import EMOTION_ADJECTIVE
from prep.jsonl_cache import append_cache, read_cache
from prep.teacher import generate_sorted, in_share

PROMPT_DIR = Path(__file__).parent / "prompts"
PLACEHOLDERS = ("{transcript}", "{emotion}", "{valence}", "{arousal}", "{dominance}")
QUESTION_TYPES = ("content", "content+emotion", "content+gender")
# What a line template asks for, by question type (clips alternate between the two).
INSTRUCTIONS = {
    "content": "Write a question about what they said, and its answer.",
    "content+emotion": "Write a question about what they said, and a good answer that takes into account how they "
                       "feel.",
}
_LINE_PAIR = re.compile(r"question\s*\d*\s*:\s*(.+?)\s*\n\s*(?:\n\s*)*answer\s*\d*\s*:\s*(.+?)\s*(?:\n\s*\n|$)",
                        re.IGNORECASE | re.DOTALL)
CACHE_NAME = "qa_cache.jsonl"
SUMMARY_NAME = "qa_summary.json"


# ---- the prompt ----------------------------------------------------------------------------------------------------
def load_template(version: str) -> str:
    """The prompt template of ``version`` (e.g. ``v1``): every placeholder in it, and ``{pairs}`` (a JSON template)
    or ``{instruction}`` (a line template)."""
    path = PROMPT_DIR / f"qa_generate_{version}.txt"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("qa_generate_") for p in PROMPT_DIR.glob("qa_generate_*.txt"))
        raise ValueError(f"no QA prompt template {path.name} (versions: {', '.join(known)})")
    text = path.read_text(encoding="utf-8")
    missing = [p for p in PLACEHOLDERS if p not in text]
    if ("{pairs}" in text) == ("{instruction}" in text):
        missing.append("exactly one of {pairs} and {instruction}")
    if missing:
        raise ValueError(f"{path}: the template lacks {', '.join(missing)}")
    return text


def is_line_template(template: str) -> bool:
    return "{instruction}" in template


def line_question_type(clip_id: str) -> str:
    """The question type a line template asks about for this clip: stable, half the clips each."""
    return ("content", "content+emotion")[zlib.crc32(clip_id.encode()) % 2]


def fill_template(template: str, meta: dict[str, Any], pairs: int, question_type: str | None = None) -> str:
    """The generator prompt of one clip. Plain replacement, so the template's JSON braces need no escaping.
    A line template needs ``question_type`` (its instruction)."""
    def dim(name: str) -> str:
        return "unknown" if meta.get(name) is None else f"{float(meta[name]):.1f}"

    values = {"{transcript}": meta["transcript"].strip(), "{emotion}": meta["emotion"], "{valence}": dim("valence"),
              "{arousal}": dim("arousal"), "{dominance}": dim("dominance"), "{pairs}": str(pairs)}
    if is_line_template(template):
        if question_type not in INSTRUCTIONS:
            raise ValueError(f"a line template asks one of {', '.join(INSTRUCTIONS)}, not {question_type!r}")
        values["{instruction}"] = INSTRUCTIONS[question_type]
    for slot, value in values.items():
        template = template.replace(slot, value)
    return template


# ---- parsing and filtering -----------------------------------------------------------------------------------------
def parse_reply(reply: str) -> list | None:
    """The list of candidate pairs in a generator reply (code fences and prose around the JSON are tolerated;
    ``{"pairs": [...]}`` and a lone pair object are accepted), else the ``Question: ...`` / ``Answer: ...`` pairs
    of a line reply (without a type; each answer ends at a blank line), or None when there are neither."""
    text = re.sub(r"```(?:json)?", "", reply or "").strip()
    candidates = [text]
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            if "question" in value:
                return [value]
            inner = next((v for k, v in value.items() if k in ("pairs", "qa", "questions") and isinstance(v, list)),
                         None)
            if inner is not None:
                return inner
    lines = [{"question": _unquote(q), "answer": _unquote(a)} for q, a in _LINE_PAIR.findall(text)]
    return lines or None


def _unquote(text: str) -> str:
    text = " ".join(text.split())
    return text[1:-1].strip() if len(text) > 1 and text[0] == text[-1] == '"' else text


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def normalise_type(value: Any) -> str | None:
    """``"Content + Emotion"``, ``content_emotion``, ``content & emotion`` -> ``content+emotion``; None if unknown."""
    if not isinstance(value, str):
        return None
    t = re.sub(r"\s*(?:\+|&|_|/|\band\b)\s*", "+", value.strip().lower())
    return t if t in QUESTION_TYPES else None


@dataclass(frozen=True)
class QAFilter:
    """The rules a generated pair must pass; see :func:`check_pair` for the rejection reasons."""

    max_question_words: int = 30
    max_answer_words: int = 60
    forbid_label_in_question: bool = True
    max_pairs: int = 4


def leaks_label(question: str, emotion: str | None) -> bool:
    """Whether the question names the clip's emotion (its label or its adjective) as a whole word."""
    if not emotion:
        return False
    words = set(_norm(question).split())
    return bool(words & {emotion.lower(), EMOTION_ADJECTIVE.get(emotion, emotion).lower()})


def check_pair(item: Any, emotion: str | None, rules: QAFilter,
               question_type: str | None = None) -> tuple[dict | None, str | None]:
    """``(pair, None)`` for a usable pair, else ``(None, reason)`` with reason one of ``not_an_object``,
    ``empty``, ``bad_type``, ``too_long``, ``answer_repeats_question``, ``label_leak``. ``question_type``: the
    type a line prompt asked for (its pairs carry none)."""
    if not isinstance(item, dict):
        return None, "not_an_object"
    question, answer = item.get("question"), item.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str) or not question.strip() or not answer.strip():
        return None, "empty"
    qtype = normalise_type(item.get("type", question_type))
    if qtype is None:
        return None, "bad_type"
    question, answer = " ".join(question.split()), " ".join(answer.split())
    if len(question.split()) > rules.max_question_words or len(answer.split()) > rules.max_answer_words:
        return None, "too_long"
    q, a = _norm(question), _norm(answer)
    # The answer says nothing new: it is the question, or the question plus a word or two.
    if a == q or (q and q in a and len(a.split()) <= len(q.split()) + 2):
        return None, "answer_repeats_question"
    if rules.forbid_label_in_question and leaks_label(question, emotion):
        return None, "label_leak"
    return {"question": question, "answer": answer, "type": qtype}, None


def select_pairs(reply: str, emotion: str | None, rules: QAFilter, rejected: Counter,
                 question_type: str | None = None) -> list[dict]:
    """The kept pairs of one reply, in order: valid, not a duplicate question, at most ``rules.max_pairs``.
    Every rejection is counted in ``rejected`` (an unreadable reply once, as ``unparsable_reply``)."""
    items = parse_reply(reply)
    if items is None:
        rejected["unparsable_reply"] += 1
        return []
    kept: list[dict] = []
    seen: set[str] = set()
    for item in items:
        pair, reason = check_pair(item, emotion, rules, question_type)
        if pair is not None and _norm(pair["question"]) in seen:
            pair, reason = None, "duplicate"
        if pair is not None and len(kept) >= rules.max_pairs:
            pair, reason = None, "surplus"
        if pair is None:
            rejected[reason] += 1
            continue
        seen.add(_norm(pair["question"]))
        kept.append(pair)
    return kept


# ---- generators ----------------------------------------------------------------------------------------------------
class QAGenerator(Protocol):
    generator_id: str

    def replies(self, prompts: list[str]) -> Iterator[tuple[list[int], list[str]]]:
        """Yield (indices into ``prompts``, raw replies) batch by batch."""


class LocalGenerator:
    """A local transformers causal LM through its chat template; batched greedy generation (the teacher's)."""

    def __init__(self, name: str, *, max_new_tokens: int, batch_size: int, reply_prefix: str = "",
                 tiny: dict | None = None) -> None:
        import torch

        from clips.prompts import ChatPrompter
        from lightning_modules.frozen_llm import FrozenLLM
        from lightning_modules.llm_loading import load_causal_lm

        model, tokenizer = load_causal_lm(name, tiny=tiny)
        self.llm = FrozenLLM(model, ChatPrompter(tokenizer), model_id=name)
        if torch.cuda.is_available():
            self.llm.to("cuda")
        self.max_new_tokens, self.batch_size, self.reply_prefix = max_new_tokens, batch_size, reply_prefix
        self.generator_id = f"local:{name}"

    def replies(self, prompts: list[str]) -> Iterator[tuple[list[int], list[str]]]:
        prompter = self.llm.prompter
        # The reply prefix is the start of the assistant turn: the model goes on from it.
        ids = [prompter.encode(prompter.render(p) + self.reply_prefix) for p in prompts]
        for idx, reply_ids in generate_sorted(self.llm, ids, self.batch_size, self.max_new_tokens):
            yield idx, [(self.reply_prefix + prompter.tokenizer.decode(r, skip_special_tokens=True)).strip()
                        for r in reply_ids]


class EndpointGenerator:
    """An OpenAI-compatible chat-completions endpoint, one request per prompt (the judge's HTTP client)."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None, max_new_tokens: int) -> None:
        from prep.chat_api import check_api_key

        check_api_key(api_key_env, "QA generator")
        self.base_url, self.model, self.api_key_env, self.max_new_tokens = base_url, model, api_key_env, max_new_tokens
        self.generator_id = f"openai:{base_url.rstrip('/')}:{model}"

    def replies(self, prompts: list[str]) -> Iterator[tuple[list[int], list[str]]]:
        from prep.chat_api import chat_completion

        for i, prompt in enumerate(prompts):
            text, _ = chat_completion(self.base_url, self.model, [{"role": "user", "content": prompt}],
                                      api_key_env=self.api_key_env, max_tokens=self.max_new_tokens,
                                      who="QA generator")
            yield [i], [text]


def build_generator(settings: DictConfig) -> QAGenerator:
    if settings.base_url:
        if settings.reply_prefix:
            raise ValueError("qa_generation.reply_prefix starts a local model's reply; a chat-completions endpoint "
                             "has no such option: leave it empty with qa_generation.base_url")
        return EndpointGenerator(settings.base_url, settings.model, api_key_env=settings.api_key_env,
                                 max_new_tokens=settings.max_new_tokens)
    return LocalGenerator(settings.model, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                          reply_prefix=settings.reply_prefix)


# ---- the run -------------------------------------------------------------------------------------------------------
@dataclass
class QASummary:
    clips: int = 0
    unique_prompts: int = 0
    from_cache: int = 0
    generated: int = 0
    clips_with_pairs: int = 0
    kept: Counter = field(default_factory=Counter)  # question type -> pairs kept
    rejected: Counter = field(default_factory=Counter)  # reason -> pairs (unparsable_reply: replies)
    skipped: Counter = field(default_factory=Counter)  # reason -> clips not asked about

    def __str__(self) -> str:
        lines = [f"qa-generate: {self.clips} clips, {self.unique_prompts} unique prompts ({self.from_cache} from the "
                 f"cache, {self.generated} generated); {sum(self.kept.values())} pairs kept for "
                 f"{self.clips_with_pairs} clips"]
        lines += [f"  kept {t}: {n}" for t, n in sorted(self.kept.items())]
        lines += [f"  rejected {reason}: {n}" for reason, n in self.rejected.most_common()]
        lines += [f"  skipped clips, {reason}: {n}" for reason, n in self.skipped.most_common()]
        return "\n".join(lines)


def _prompt_hash(generator_id: str, settings: dict[str, Any], prompt: str) -> str:
    return hashlib.sha1(json.dumps([generator_id, settings, prompt], sort_keys=True).encode()).hexdigest()


def generate_qa(settings: DictConfig, shard_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                generator: QAGenerator | None = None) -> QASummary:
    """Generate (or take from the cache) QA pairs for the clips of ``settings.splits`` in ``shard_dir`` and write
    every shard, with ``<key>.qa.json`` for the clips asked about, into ``out_dir`` (see the module docstring).

    ``settings``: a ``qa_generation`` recipe section; ``generator``: one already built (tests, notebooks).
    """
    shards = shard_files(shard_dir)
    if not shards:
        raise FileNotFoundError(f"no <split>-NNNNNN.tar shards in {shard_dir}")
    out = Path(out_dir)
    if out.resolve() == Path(shard_dir).resolve():
        raise ValueError("the output folder must differ from the input shards: QA pairs go into new shards")
    if settings.pairs < 1:
        raise ValueError(f"qa_generation.pairs must be >= 1, got {settings.pairs}")
    if not 0.0 < settings.share <= 1.0:
        raise ValueError(f"qa_generation.share={settings.share} must be in (0, 1]")
    out.mkdir(parents=True, exist_ok=True)
    template = load_template(settings.prompt_version)
    generator = generator or build_generator(settings)
    version = f"qa_generate_{settings.prompt_version}"
    gen_settings = {"version": version, "template": template, "max_new_tokens": int(settings.max_new_tokens),
                    "reply_prefix": settings.reply_prefix}
    line = is_line_template(template)

    summary = QASummary()
    prompts: dict[str, str] = {}  # hash -> prompt text
    clip_prompt: dict[str, tuple[str, str, str | None]] = {}  # key -> (hash, emotion, asked type)
    for _, meta in iter_shard_metadata(shards):
        summary.clips += 1
        if meta.get("split") not in settings.splits:
            summary.skipped["split not selected"] += 1
        elif not (meta.get("transcript") or "").strip():
            summary.skipped["no transcript"] += 1
        elif not meta.get("emotion"):
            summary.skipped["no emotion label"] += 1
        elif not in_share(str(meta["id"]), settings.share):
            summary.skipped["outside qa_generation.share"] += 1
        else:
            qtype = line_question_type(str(meta["id"])) if line else None
            text = fill_template(template, meta, settings.pairs, qtype)
            h = _prompt_hash(generator.generator_id, gen_settings, text)
            prompts[h] = text
            clip_prompt[meta["id"]] = (h, meta["emotion"], qtype)
    summary.unique_prompts = len(prompts)

    cache_path = out / CACHE_NAME
    cache = read_cache(cache_path)
    todo = [h for h in prompts if h not in cache]
    summary.from_cache = len(prompts) - len(todo)
    with tqdm(total=len(prompts), initial=summary.from_cache, desc="QA replies", unit="prompt") as bar:
        for idx, replies in generator.replies([prompts[h] for h in todo]):
            new = {todo[i]: {"reply": r} for i, r in zip(idx, replies)}
            append_cache(cache_path, new)
            cache.update(new)
            summary.generated += len(new)
            bar.update(len(new))

    rules = QAFilter(settings.max_question_words, settings.max_answer_words, settings.forbid_label_in_question,
                     settings.pairs)

    def add(chunk: list[tuple[str, dict]]) -> list[dict[str, bytes]]:
        added = []
        for _key, meta in chunk:
            if meta["id"] not in clip_prompt:
                added.append({})
                continue
            h, emotion, qtype = clip_prompt[meta["id"]]
            pairs = select_pairs(cache[h]["reply"], emotion, rules, summary.rejected, qtype)
            for pair in pairs:
                pair.update(prompt_version=version, generator=generator.generator_id)
                summary.kept[pair["type"]] += 1
            summary.clips_with_pairs += bool(pairs)
            added.append({"qa.json": json.dumps(pairs, ensure_ascii=False).encode("utf-8")})
        return added

    rewrite_shards(shard_dir, out, add, batch_size=256, skip_existing=False)
    print(summary)
    if prompts and not summary.kept:  # no summary written: the next run asks again instead of training without QA
        raise RuntimeError(f"qa-generate kept no pair from {len(prompts)} replies; read the replies in {cache_path}. "
                           "A small local model needs a line template: qa_generation.prompt_version=v2 "
                           "qa_generation.reply_prefix='Question:'")
    # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs as keys.
    (out / SUMMARY_NAME).write_text(json.dumps({**vars(summary), "fingerprint": fingerprint(settings)}, indent=1)
                                    + "\n")
    return summary


def fingerprint(settings: DictConfig) -> str:
    """What the QA shards were made with (settings and template): a changed recipe makes them again."""
    from omegaconf import OmegaConf

    blob = json.dumps([OmegaConf.to_container(settings, resolve=True), load_template(settings.prompt_version)],
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def is_current(settings: DictConfig, out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds QA shards made with these settings (its summary says so)."""
    path = Path(out_dir) / SUMMARY_NAME
    try:
        return json.loads(path.read_text()).get("fingerprint") == fingerprint(settings)
    except (OSError, json.JSONDecodeError):
        return False
