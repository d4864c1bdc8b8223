"""An LLM judge that scores each reply 0-100 for fitting both what the speaker said and how they felt.

Backends: any OpenAI-compatible chat-completions endpoint (:class:`OpenAIJudge`) or a local transformers causal
LM (:class:`LocalJudge`, by default the probability-weighted score of G-Eval). Malformed judge output is retried
with a stricter reminder, then recorded as unparsed (score None) and left out of the mean, never scored 0.
Results are cached in a JSONL file keyed by a hash of (judge id, prompt, reply) so a re-run only asks about new
items. The API key is read from the environment at request time and is never logged, cached or stored on the
object.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from prep.chat_api import chat_completion, check_api_key

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a strict, fair evaluator of conversational replies. You answer only with a score."

RUBRIC = """\
A speaker said something out loud. Rate how well the assistant's reply fits BOTH what the speaker said AND the \
speaker's emotional state and speaking style.

Speaker's words (transcript): {transcript}
Speaker's emotional state: {emotion}
Speaker's speaking style: {style}
Instruction given to the assistant: {prompt}
Reference reply (one good answer, not the only one): {reference}

Assistant's reply to rate: {reply}

Scoring guide (0-100):
- 90-100: addresses the content correctly AND clearly reflects the speaker's emotional state.
- 70-89: addresses the content and is broadly consistent with the emotion, with minor gaps.
- 40-69: addresses the content but ignores or misreads the emotion (or the reverse).
- 10-39: mostly off-topic or contradicts the speaker's emotional state.
- 0-9: irrelevant, empty or nonsensical.

Answer with one line of the form "Score: N" where N is an integer from 0 to 100."""

RETRY_REMINDER = "\n\nYour previous answer could not be read. Reply with exactly `Score: N` (N from 0 to 100)."

_NUMBER = r"(\d+(?:\.\d+)?)"
_JSON_SCORE = re.compile(r"\{[^{}]*\"score\"\s*:\s*\"?" + _NUMBER + r"\"?[^{}]*\}", re.IGNORECASE)
# A number after "score"/"rating", optionally written as a fraction ("Score: 8/10" is on another scale: refused).
_LABELLED = re.compile(
    r"\b(?:score|rating)\b\W{0,6}(?:is|of|=)?\W{0,3}" + _NUMBER + r"(?:\s*(?:/|out\s+of)\s*(\d+))?", re.IGNORECASE
)
_FRACTION = re.compile(_NUMBER + r"\s*(?:/|out\s+of)\s*(\d+)\b", re.IGNORECASE)
_BARE = re.compile(r"^\W*" + _NUMBER + r"\W*$")


def parse_score(text: str | None) -> float | None:
    """The 0-100 score in a judge answer, or None when there is none (or it is out of range / on another scale).

    Accepted: JSON ``{"score": 85}``, ``Score: 85`` / ``**Rating** - 85`` (any case), ``85/100``,
    ``85 out of 100``, or the bare number alone. Other numbers in prose are not guessed at.
    """
    text = (text or "").strip()
    for pattern in (_JSON_SCORE, _LABELLED, _FRACTION, _BARE):
        match = pattern.search(text)
        if match is None:
            continue
        denominator = match.group(2) if pattern.groups > 1 else None
        if denominator is not None and denominator != "100":
            return None
        value = float(match.group(1))
        return value if 0 <= value <= 100 else None
    return None


def drop_cut_number(text: str) -> str:
    """Remove a number at the very end of an answer that hit the token limit: "The score is 9" may be a cut "90".

    Without this a truncated answer would be read as a wrong score instead of being retried.
    """
    return re.sub(r"\d+(?:\.\d*)?\s*$", "", text)


def judge_prompt(record: dict[str, Any]) -> str:
    """The rubric filled in from one generation record (missing fields are written as 'unknown')."""
    style = record.get("style") or []

    def shown(value: Any) -> str:
        return str(value) if value not in (None, "") else "unknown"

    return RUBRIC.format(
        transcript=shown(record.get("transcript")),
        emotion=shown(record.get("emotion")),
        style=", ".join(style) if style else "unknown",
        prompt=shown(record.get("prompt")),
        reference=shown(record.get("reference")),
        reply=record.get("reply") or "(empty reply)",
    )


@dataclass
class JudgeResult:
    """One judged reply: ``score`` is None when every attempt was malformed (``raw`` holds the last answer)."""

    key: str
    score: float | None
    raw: str
    attempts: int
    cached: bool = False


class JudgeCache:
    """Append-only JSONL of judge results keyed by hash; later lines win, so a torn last line costs one item."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._items: dict[str, JudgeResult] = {}
        if self.path.exists():
            for line_no, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    data = json.loads(line)
                    self._items[data["key"]] = JudgeResult(**{**data, "cached": True})
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("judge cache %s: skipping unreadable line %d", self.path, line_no)

    def get(self, key: str) -> JudgeResult | None:
        return self._items.get(key)

    def put(self, result: JudgeResult) -> None:
        self._items[result.key] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({k: v for k, v in asdict(result).items() if k != "cached"}) + "\n")

    def __len__(self) -> int:
        return len(self._items)


class Judge:
    """Scoring, retries, caching and progress; subclasses only say how to ask the model one question."""

    judge_id: str = "judge"

    def __init__(self, *, retries: int = 2, cache_path: str | Path | None = None):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.retries = retries
        self.cache = JudgeCache(cache_path) if cache_path is not None else None

    def complete(self, prompt: str) -> str:
        """The judge model's raw answer to one user message."""
        raise NotImplementedError

    def cache_key(self, prompt: str, reply: str) -> str:
        blob = json.dumps([self.judge_id, prompt, reply], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def score_one(self, record: dict[str, Any]) -> JudgeResult:
        prompt = judge_prompt(record)
        key = self.cache_key(prompt, record.get("reply") or "")
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return hit
        raw = ""
        for attempt in range(1, self.retries + 2):
            raw = self.complete(prompt if attempt == 1 else prompt + RETRY_REMINDER)
            score = parse_score(raw)
            if score is not None:
                break
            log.info("judge %s: unparsable answer (attempt %d): %.80r", self.judge_id, attempt, raw)
        result = JudgeResult(key=key, score=score, raw=raw, attempts=attempt)
        if self.cache is not None:
            self.cache.put(result)
        return result

    def score(self, records: Iterable[dict[str, Any]], *, desc: str = "judging") -> list[JudgeResult]:
        records = list(records)
        return [self.score_one(r) for r in tqdm(records, desc=desc, unit="reply", disable=not records)]


def summarize(results: list[JudgeResult]) -> dict[str, Any]:
    """Mean over parsed scores with the counts a reader needs (unparsed items are excluded, not zeroed)."""
    scores = [r.score for r in results if r.score is not None]
    return {
        "mean": sum(scores) / len(scores) if scores else None,
        "n_scored": len(scores),
        "n_unparsed": len(results) - len(scores),
        "n_retried": sum(r.attempts > 1 for r in results),
    }


class OpenAIJudge(Judge):
    """A judge behind an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint (greedy, temperature 0)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        *,
        timeout: float = 60.0,
        max_tokens: int = 24,
        http_retries: int = 3,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        check_api_key(api_key_env, "judge")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.http_retries = http_retries
        self.judge_id = f"openai:{self.base_url}:{model}"

    def complete(self, prompt: str) -> str:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        text, finish = chat_completion(self.base_url, self.model, messages, api_key_env=self.api_key_env,
                                       max_tokens=self.max_tokens, timeout=self.timeout,
                                       http_retries=self.http_retries, who="judge")
        return drop_cut_number(text) if finish == "length" else text


# The midpoints of the rubric's five bands: what the expected-score judge weighs by probability.
BAND_SCORES = (5, 25, 55, 80, 95)


class LocalJudge(Judge):
    """A local transformers causal LM as judge, through its chat template.

    ``mode="expected"`` (the default) scores like G-Eval (Liu et al., 2023): after the forced answer prefix
    "Score: ", the probability the model gives each band's score (:data:`BAND_SCORES`, each followed by the end of
    turn), renormalised, weighs the expected score. A small model decoded greedily gives nearly every reply the same
    number (SmolLM2-135M answers 90 to everything), so its scores cannot rank replies; its probabilities still can,
    a little. ``mode="generate"`` decodes the answer greedily and parses it, as an endpoint judge does."""

    def __init__(self, model, tokenizer, *, name: str | None = None, mode: str = "expected",
                 max_new_tokens: int = 24, **kwargs: Any):
        super().__init__(**kwargs)
        if tokenizer.chat_template is None:
            raise ValueError("LocalJudge needs a tokenizer with a chat template")
        if mode not in ("expected", "generate"):
            raise ValueError(f"LocalJudge mode must be 'expected' or 'generate', got {mode!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        name = name or getattr(model.config, "name_or_path", "") or type(model).__name__
        self.judge_id = f"local:{name}" if mode == "generate" else f"local-expected:{name}"

    def complete(self, prompt: str) -> str:
        return self._expected(prompt) if self.mode == "expected" else self._generate(prompt)

    def _chat(self, prompt: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]

    def _generate(self, prompt: str) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(
            self._chat(prompt), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"].to(self.model.device)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                do_sample=False, pad_token_id=self._pad_id(),
            )
        new = out[0, ids.shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        hit_limit = len(new) >= self.max_new_tokens and int(new[-1]) != self.tokenizer.eos_token_id
        return drop_cut_number(text) if hit_limit else text

    def _expected(self, prompt: str) -> str:
        """``Score: E`` with the band probabilities after it (kept in the cache's ``raw`` for a reader)."""
        import torch

        from lightning_modules.frozen_llm import continuation_logprobs

        text = self.tokenizer.apply_chat_template(self._chat(prompt), add_generation_prompt=True, tokenize=False)
        prefix = self.tokenizer(text + "Score: ", add_special_tokens=False)["input_ids"]
        options = [self.tokenizer(str(s), add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
                   for s in BAND_SCORES]
        device = self.model.device
        with torch.no_grad():
            # The long rubric prefix once (its KV cache copied to every option), then the short options together:
            # log P(option | prefix)
            ids = torch.tensor([prefix], device=device)
            totals = continuation_logprobs(self.model, self.model.get_input_embeddings()(ids), torch.ones_like(ids),
                                           options, self._pad_id())[0].cpu()
        probs = totals.softmax(0)
        expected = float((probs * torch.tensor(BAND_SCORES, dtype=torch.float)).sum())
        shown = " ".join(f"{s}={float(p):.3f}" for s, p in zip(BAND_SCORES, probs))
        return f"Score: {expected:.1f} (band probabilities {shown})"

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id
