import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from paralign.evaluation.judge import (
    RETRY_REMINDER,
    LocalJudge,
    OpenAIJudge,
    judge_prompt,
    parse_score,
    summarize,
)

KEY = "sk-test-123"
RECORD = {"id": "c1", "task": "response", "prompt": "<speech>", "reply": "Oh no, that sounds stressful.",
          "reference": "I'm sorry, that sounds frustrating.", "emotion": "angry", "style": ["loud"],
          "transcript": "I lost my keys again"}


@pytest.mark.parametrize("text,score", [
    ("Score: 85", 85.0), ("**Score:** 85", 85.0), ("85/100", 85.0), ("85 out of 100", 85.0),
    ('{"score": 85}', 85.0), ('```json\n{"score": "72", "reason": "ok"}\n```', 72.0), (" 85. ", 85.0),
    ("Rating of 40", 40.0), ("Score: 8/10", None), ("score is 120", None), ("I like it, 3 stars", None),
    ("", None), (None, None),
])
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_prompt_names_words_emotion_and_reply():
    prompt = judge_prompt(RECORD)
    for part in ("I lost my keys again", "angry", "loud", "Oh no, that sounds stressful.", "0 to 100"):
        assert part in prompt
    assert "unknown" in judge_prompt({"reply": "x"})


class FakeChatServer:
    """An OpenAI-style chat-completions endpoint answering from a script (the last answer repeats). An answer is a
    reply, a (reply, finish_reason) pair, or an HTTP error status."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                answer = outer.answers[min(len(outer.requests) - 1, len(outer.answers) - 1)]
                if isinstance(answer, int):
                    return self._send(answer, {"error": {"message": "overloaded"}})
                answer, finish = answer if isinstance(answer, tuple) else (answer, "stop")
                self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                })

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After-Ms", "10")  # the openai client's back-off before a retry: short here
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    return "JUDGE_TEST_KEY"


def test_http_judge_speaks_chat_completions_and_retries(api_key):
    with FakeChatServer(["This reply is quite good.", "Score: 85"]) as srv:
        judge = OpenAIJudge(srv.url, "judge-model", api_key_env=api_key, retries=2)
        (result,) = judge.score([RECORD])
    assert (result.score, result.attempts) == (85.0, 2)
    assert len(srv.requests) == 2
    first, second = srv.requests
    assert first["path"] == "/v1/chat/completions" and first["auth"] == f"Bearer {KEY}"
    assert first["body"]["model"] == "judge-model" and first["body"]["temperature"] == 0
    assert [m["role"] for m in first["body"]["messages"]] == ["system", "user"]
    assert first["body"]["messages"][1]["content"] == judge_prompt(RECORD)
    assert second["body"]["messages"][1]["content"].endswith(RETRY_REMINDER)


def test_http_answer_cut_at_token_limit_is_retried(api_key):
    with FakeChatServer([("Score: 9", "length"), "Score: 95"]) as srv:
        (result,) = OpenAIJudge(srv.url, "m", api_key_env=api_key).score([RECORD])
    assert (result.score, result.attempts) == (95.0, 2)


def test_always_malformed_is_unparsed_not_zero(api_key):
    good = {**RECORD, "reply": "good"}
    with FakeChatServer(["Score: 90", "I cannot rate this."]) as srv:
        judge = OpenAIJudge(srv.url, "m", api_key_env=api_key, retries=2)
        results = judge.score([good, RECORD])
    assert len(srv.requests) == 1 + 3  # one good answer, then the first try and two retries
    assert results[1].score is None and results[1].raw == "I cannot rate this."
    assert summarize(results) == {"mean": 90.0, "n_scored": 1, "n_unparsed": 1, "n_retried": 1}


def test_bad_key_fails_loudly_without_leaking_it(monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-wrong-key")
    with FakeChatServer(["Score: 1"]) as srv:
        judge = OpenAIJudge(srv.url, "m", api_key_env="JUDGE_TEST_KEY", http_retries=3)
        with pytest.raises(RuntimeError, match="HTTP 401") as err:
            judge.score_one(RECORD)
    assert len(srv.requests) == 1  # a client error is not asked again
    assert srv.requests[0]["auth"] == "Bearer sk-wrong-key"
    assert srv.url in str(err.value) and "invalid api key" in str(err.value)
    assert "sk-wrong-key" not in str(err.value)
    assert "sk-wrong-key" not in repr(vars(judge))


def test_server_errors_are_retried_then_answered(api_key):
    with FakeChatServer([500, 503, "Score: 60"]) as srv:
        (result,) = OpenAIJudge(srv.url, "m", api_key_env=api_key, http_retries=2).score([RECORD])
    assert (result.score, result.attempts) == (60.0, 1)  # one judge attempt: the client retried underneath
    assert len(srv.requests) == 3 and all(r["auth"] == f"Bearer {KEY}" for r in srv.requests)


def test_server_errors_past_the_retries_fail_naming_the_url(api_key):
    with FakeChatServer([502]) as srv:
        judge = OpenAIJudge(srv.url, "m", api_key_env=api_key, http_retries=1)
        with pytest.raises(RuntimeError, match="HTTP 502") as err:
            judge.score_one(RECORD)
    assert len(srv.requests) == 2 and f"{srv.url}/chat/completions" in str(err.value)
    assert KEY not in str(err.value)


def test_unreachable_endpoint_fails_naming_the_url(api_key):
    with FakeChatServer(["Score: 1"]) as srv:
        url = srv.url  # the port is free again once the server is gone
    judge = OpenAIJudge(url, "m", api_key_env=api_key, http_retries=0, timeout=5)
    with pytest.raises(RuntimeError, match="unreachable") as err:
        judge.score_one(RECORD)
    assert url in str(err.value)


def test_endpoint_without_key_gets_a_placeholder(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")  # never sent to an endpoint asked without a key
    with FakeChatServer(["Score: 1"]) as srv:
        with pytest.raises(RuntimeError, match="HTTP 401"):
            OpenAIJudge(srv.url, "m", api_key_env=None).score_one(RECORD)
    assert srv.requests[0]["auth"] == "Bearer unused"


def test_missing_key_variable_is_an_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_JUDGE_KEY"):
        OpenAIJudge("http://127.0.0.1:9", "m", api_key_env="NO_SUCH_JUDGE_KEY")


def test_cache_skips_finished_items(api_key, tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    records = [RECORD, {**RECORD, "reply": "Whatever."}]
    with FakeChatServer(["Score: 70"]) as srv:
        first = OpenAIJudge(srv.url, "m", api_key_env=api_key, cache_path=cache).score(records)
        assert len(srv.requests) == 2
        again = OpenAIJudge(srv.url, "m", api_key_env=api_key, cache_path=cache).score(records)
        assert len(srv.requests) == 2  # nothing asked twice
        assert [r.score for r in again] == [r.score for r in first] == [70.0, 70.0]
        assert all(r.cached for r in again)
        OpenAIJudge(srv.url, "other-model", api_key_env=api_key, cache_path=cache).score(records[:1])
        assert len(srv.requests) == 3  # another judge id is another cache key
    assert KEY not in cache.read_text()


def _tiny_judge(**kwargs):
    from lightning_modules.tiny_llm import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    return LocalJudge(model, tok, name="tiny", **kwargs), model, tok


@pytest.mark.slow  # imports the transformers Llama stack: ~6 s alone
def test_local_judge_random_model_is_counted_unparsed_or_scored():
    judge, _, _ = _tiny_judge(mode="generate", retries=1, max_new_tokens=4)
    (result,) = judge.score([RECORD])
    assert judge.judge_id == "local:tiny"
    assert result.score == parse_score(result.raw)
    if result.score is None:  # garbage: retried once, then counted as unparsed (not 0)
        assert result.attempts == 2
        assert summarize([result])["n_unparsed"] == 1


def _steer(model, tok, tokens):
    """Make the random model's greedy answer the given tokens, one per generation step, then repeat the last."""
    ids = [tok.convert_tokens_to_ids(t) for t in tokens]
    step = {"n": 0}

    def hook(module, inputs, output):
        bias = torch.zeros(output.shape[-1])
        bias[ids[min(step["n"], len(ids) - 1)]] = 1e4
        step["n"] += 1
        return output + bias

    model.lm_head.register_forward_hook(hook)
    return step


def test_local_judge_generates_through_chat_template(tmp_path):
    judge, model, tok = _tiny_judge(mode="generate", cache_path=tmp_path / "c.jsonl")
    _steer(model, tok, ["7", "7", tok.eos_token])
    (result,) = judge.score([RECORD])
    assert (result.raw, result.score, result.attempts) == ("77", 77.0, 1)


def test_local_judge_does_not_read_a_cut_number():
    judge, model, tok = _tiny_judge(mode="generate", max_new_tokens=2, retries=1)
    _steer(model, tok, ["9"])  # "99..." cut at the token limit: "99" could be the start of anything
    (result,) = judge.score([RECORD])
    assert result.score is None and result.attempts == 2


class BigramLM(torch.nn.Module):
    """A causal LM whose next-token logits depend on the current token only, from a table a test fills in."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab_size, vocab_size), requires_grad=False)
        self.config = type("Config", (), {"name_or_path": "bigram"})()

    @property
    def device(self) -> torch.device:
        return self.table.device

    def get_input_embeddings(self):
        return lambda ids: torch.nn.functional.one_hot(ids, self.table.shape[0]).float()  # read back by argmax

    def forward(self, inputs_embeds, attention_mask=None, past_key_values=None, use_cache=False, position_ids=None,
                logits_to_keep=0):
        cache = past_key_values or type("Cache", (), {"batch_repeat_interleave": lambda self, n: None})()
        logits = self.table[inputs_embeds.argmax(-1)][:, -logits_to_keep:]
        return type("Output", (), {"logits": logits, "past_key_values": cache})()


def test_expected_judge_weighs_the_band_scores_by_their_probability(tmp_path):
    from lightning_modules.tiny_llm import tiny_tokenizer

    tok = tiny_tokenizer()
    model = BigramLM(len(tok))
    token = tok.convert_tokens_to_ids
    # After "Score: " the model says "8" (e^4 against 1 for any other digit), then "0", then ends its turn:
    # "80" is the likeliest band, "5", "25", "55" and "95" share the rest.
    model.table.data[token("Ġ"), token("8")] = 4.0  # byte-level "Ġ" is the space
    model.table.data[token("8"), token("0")] = 20.0
    model.table.data[token("0"), tok.eos_token_id] = 20.0
    for digit in "59":
        model.table.data[token(digit), tok.eos_token_id] = 20.0
    model.table.data[token("2"), token("5")] = 20.0  # and "55" is unlikely: after a "5" the turn ends
    judge = LocalJudge(model, tok, name="bigram", cache_path=tmp_path / "c.jsonl")
    (result,) = judge.score([RECORD])
    assert judge.judge_id == "local-expected:bigram"
    assert result.attempts == 1 and result.raw.startswith(f"Score: {result.score:.1f} (band probabilities")
    probs = dict(re.findall(r"(\d+)=([\d.]+)", result.raw.split("(", 1)[1]))
    assert set(probs) == {"5", "25", "55", "80", "95"}
    assert float(probs["80"]) > 0.8 and max(float(p) for b, p in probs.items() if b != "80") < 0.1
    weighted = sum(int(b) * float(p) for b, p in probs.items())
    assert result.score == pytest.approx(weighted, abs=0.2) and 70 < result.score < 80
    model.table.data[token("Ġ"), token("8")] = 0.0  # no preference left: the scores mean less, not more
    flat = LocalJudge(model, tok, name="bigram-flat").score([RECORD])[0].score
    assert flat < result.score


@pytest.mark.slow  # imports the transformers Llama stack
def test_expected_judge_with_a_kv_cache_matches_one_full_pass_per_option():
    """The prefix is read once and its cache shared by the options: the same log-probs as reading each option's
    whole sequence, on a real (tiny, random) Llama."""
    from paralign.evaluation.judge import BAND_SCORES

    judge, model, tok = _tiny_judge()
    raw = judge.complete(judge_prompt(RECORD))
    probs = [float(p) for p in re.findall(r"=([\d.]+)", raw)]
    text = tok.apply_chat_template(judge._chat(judge_prompt(RECORD)), add_generation_prompt=True, tokenize=False)
    prefix = tok(text + "Score: ", add_special_tokens=False)["input_ids"]
    totals = []
    for score in BAND_SCORES:
        option = tok(str(score), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            lp = model(input_ids=torch.tensor([prefix + option])).logits[0].log_softmax(-1)
        totals.append(sum(float(lp[len(prefix) + i - 1, t]) for i, t in enumerate(option)))
    assert probs == pytest.approx(torch.tensor(totals).softmax(0).tolist(), abs=2e-3)


def test_local_judge_mode_is_checked():
    from lightning_modules.tiny_llm import tiny_tokenizer

    with pytest.raises(ValueError, match="mode must be 'expected' or 'generate'"):
        LocalJudge(BigramLM(8), tiny_tokenizer(), mode="greedy")
