"""``paralign serve``: the OpenAI chat API with audio in, answered by the ``openai`` client itself; every bad request
a 4xx with a JSON error, after which the server still serves; concurrent requests answered in batches."""
from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest
import soundfile as sf

from paralign.infer import Answerer, Question, checked_wave, load_for_inference
from paralign.serve import Limits, create_app, serving_in_thread
from tests.paralign.conftest import tone

KEY = "test-key-123"


@pytest.fixture(scope="module")
def served(tiny_run):
    _, run_dir, _ = tiny_run
    model, cfg = load_for_inference(run_dir / "checkpoints" / "last.ckpt")
    answerer = Answerer(model, cfg, max_new_tokens=6, do_sample=False)
    app = create_app(answerer, "tiny-test", Limits(max_audio_seconds=30, max_body_mb=2, batch_window_ms=200), KEY)
    with serving_in_thread(app) as url:
        yield url, answerer, app


def _audio_part(data: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def _client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def _post(url: str, body: bytes, key: str | None = KEY) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_the_openai_client_gets_the_models_reply_to_a_recording(served, recording):
    url, answerer, _ = served
    clip = recording.read_bytes()
    client = _client(url)
    assert [m.id for m in client.models.list().data] == ["tiny-test"]
    done = client.chat.completions.create(model="tiny-test", messages=[
        {"role": "user", "content": [_audio_part(clip)]}])
    wave = checked_wave(clip, answerer.cfg.data.sample_rate, "clip")
    response = answerer.model.tasks["response"].instructions[0]
    (direct,) = answerer.answer([wave], [[Question(response)]])
    assert done.choices[0].message.content == direct.reply  # the same greedy reply as the model's own
    assert done.model_extra["paralign"]["task"] == "response"
    # a trained task's question, by name; a text part is the user's own instruction
    emotion = client.chat.completions.create(model="tiny-test", messages=[{"role": "user", "content": [
        _audio_part(clip)]}], extra_body={"task": "emotion"})
    assert "emotion" in emotion.model_extra["paralign"]["labels"]
    own = client.chat.completions.create(model="tiny-test", messages=[{"role": "user", "content": [
        _audio_part(clip), {"type": "text", "text": "Who is speaking?"}]}])
    assert own.model_extra["paralign"]["task"] is None and isinstance(own.choices[0].message.content, str)
    # stream: true speaks server-sent events; the text is the same reply
    chunks = client.chat.completions.create(model="tiny-test", stream=True, messages=[
        {"role": "user", "content": [_audio_part(clip)]}])
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == direct.reply


@pytest.mark.slow
def test_bad_requests_are_4xx_json_errors_and_the_server_goes_on(served, tmp_path):
    url, _, _ = served
    long = io.BytesIO()
    sf.write(long, np.zeros(10 * 60 * 8000, dtype=np.int16), 8000, format="WAV", subtype="PCM_16")  # 10 minutes
    text_file = b"just some text, not audio at all\n" * 10

    def chat(*parts, **extra) -> bytes:
        return json.dumps({"model": "tiny-test", "messages": [{"role": "user", "content": list(parts)}],
                           **extra}).encode()
    bad_base64 = {"type": "input_audio", "input_audio": {"data": "%%% not base64 %%%", "format": "wav"}}
    cases = {
        "malformed base64": (chat(bad_base64), 400, "is not valid base64"),
        "a text file as audio": (chat(_audio_part(text_file)), 400, "cannot read audio"),
        "a 10-minute clip": (chat(_audio_part(long.getvalue())), 413 if len(long.getvalue()) > 2e6 else 400,
                             "MB"),
        "an empty body": (b"", 400, "empty request body"),
        "not JSON": (b"{", 400, "not JSON"),
        "no audio": (chat({"type": "text", "text": "hello"}), 400, "exactly one input_audio part"),
        "an unknown task": (chat(_audio_part(tone(tmp_path / "t.wav").read_bytes()), task="dance"), 400,
                            "this model answers"),
    }
    for name, (body, status, words) in cases.items():
        got, error = _post(url, body)
        assert got == status and words in error["error"]["message"], name
        assert error["error"]["type"] == "invalid_request_error", name
    # over the duration limit, under the body limit: told from the audio's header
    minute = io.BytesIO()
    sf.write(minute, np.zeros(40 * 8000, dtype=np.int16), 8000, format="WAV", subtype="PCM_16")
    got, error = _post(url, chat(_audio_part(minute.getvalue())))
    assert got == 400 and "too long (40.0 s; at most 30 s" in error["error"]["message"]
    for key in (None, "wrong"):
        got, error = _post(url, chat(_audio_part(tone(tmp_path / "k.wav").read_bytes())), key=key)
        assert got == 401 and error["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        _client(url, key="wrong").models.list()
    # and it still serves
    assert _post(url, chat(_audio_part(tone(tmp_path / "ok.wav").read_bytes())))[0] == 200


@pytest.mark.slow
def test_concurrent_requests_are_answered_in_batches(served, tmp_path):
    url, _, app = served
    clips = [tone(tmp_path / f"c{i}.wav", hz=150 + 20 * i).read_bytes() for i in range(8)]
    before = len(app.state.batcher.batches)
    replies: dict[int, str] = {}

    def ask(i: int) -> None:
        done = _client(url).chat.completions.create(model="tiny-test", messages=[
            {"role": "user", "content": [_audio_part(clips[i])]}])
        replies[i] = done.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(replies) == 8
    sizes = app.state.batcher.batches[before:]
    assert sum(sizes) == 8 and max(sizes) > 1  # answered together, not one after another
