"""``paralign serve``: a trained model behind the OpenAI chat API, with audio in, and a page to talk to it.

``POST /v1/chat/completions`` takes the last user message: its ``input_audio`` part (base64 ``data`` and a
``format``, as OpenAI and vLLM accept them) is the speech; its text parts, if any, are the instruction (none: the
model replies to what was said and how, as its response task was trained). An extra body field ``"task"``
(``response``, ``emotion``, ``style``, ``asr``) asks the question a task was trained with instead. The reply comes
as ``choices[0].message.content``; ``paralign`` in the answer adds what the model heard (Whisper's words, where the
model reads them), the feeling it named before replying, and the label an emotion or style answer names.

Requests are batched: the first waiting request opens a short collection window, and all that arrive in it (up to
``max_batch``) are answered in one pass of the model, so N clients are served faster than one after another.
Every limit (body size, audio length, waiting requests) and every unreadable input is a 4xx with an OpenAI-style
JSON error naming the problem; the server goes on serving.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from paralign.batch_infer import named_labels
from paralign.infer import Answer, Answerer, InferenceError, Question, checked_wave, user_template

log = logging.getLogger(__name__)
DRAIN_FACTOR = 8  # a body up to this many times the limit is read and dropped before the 413


@dataclass
class Limits:
    max_audio_seconds: float = 60.0
    max_body_mb: float = 25.0
    max_waiting: int = 64  # requests queued for the model; more: 429
    max_batch: int = 8  # requests answered in one pass
    batch_window_ms: float = 20.0  # how long the first request waits for others to join its batch


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


@dataclass
class _Pending:
    wave: Any
    question: Question
    future: asyncio.Future


class Batcher:
    """Collects requests for a window and answers them in one model pass, on one worker thread (the model is
    not thread-safe; torch uses its own threads inside)."""

    def __init__(self, answerer: Answerer, limits: Limits) -> None:
        self.answerer, self.limits = answerer, limits
        self.queue: asyncio.Queue[_Pending] | None = None
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="paralign-model")
        self.batches: list[int] = []  # sizes of the batches answered (the benchmark and tests read them)

    async def ask(self, wave: Any, question: Question) -> Answer:
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._run())
        if self.queue.qsize() >= self.limits.max_waiting:
            raise ApiError(429, f"too many waiting requests ({self.limits.max_waiting}): try again shortly",
                           kind="rate_limit_error")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(wave, question, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.limits.batch_window_ms / 1000
            while len(batch) < self.limits.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except asyncio.TimeoutError:
                    break
            self.batches.append(len(batch))
            try:
                answers = await loop.run_in_executor(
                    self.worker, self.answerer.answer, [p.wave for p in batch], [[p.question] for p in batch])
            except Exception as err:  # a model failure fails this batch's requests, not the server
                log.exception("a batch of %d requests failed", len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(ApiError(500, f"the model failed: {err}", kind="server_error"))
                continue
            for pending, answer in zip(batch, answers):
                if not pending.future.done():  # the client may have gone
                    pending.future.set_result(answer)


def create_app(answerer: Answerer, model_id: str, limits: Limits | None = None,
               api_key: str | None = None) -> FastAPI:
    limits = limits or Limits()
    app = FastAPI(title="paralign", docs_url=None, redoc_url=None, openapi_url=None)
    batcher = Batcher(answerer, limits)
    app.state.batcher = batcher
    tasks = {name: t.instructions[0] for name, t in answerer.model.tasks.items() if name != "qa"}
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": {"message": err.message, "type": err.kind, "param": err.param,
                                       "code": err.status}}, status_code=err.status)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                           kind="authentication_error")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return files("paralign").joinpath("serve_page.html").read_text(encoding="utf-8")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                            "owned_by": "paralign", "paralign": {"tasks": sorted(tasks)}}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        authorize(request)
        body = await _json_body(request, int(limits.max_body_mb * 1e6))
        # decoding and resampling a minute of audio takes a while: off the event loop, which serves the others
        wave, question, task = await asyncio.get_running_loop().run_in_executor(
            None, _parse_request, body, answerer, tasks, limits)
        answer = await batcher.ask(wave, question)
        reply = answer.replies[0]
        # matching an answer to a label may run a sentence-embedding model: on the model's thread, not the loop's
        labels = await asyncio.get_running_loop().run_in_executor(batcher.worker, named_labels, {task: reply}) \
            if task else {}
        extra = {"task": task, "heard": answer.heard, "perceived": answer.perceived, "labels": labels}
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            return StreamingResponse(_stream(completion_id, model_id, reply, extra), media_type="text/event-stream")
        return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                             "finish_reason": "stop"}],
                "paralign": extra}

    return app


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, kept no further than ``limit`` bytes (413 beyond)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_FACTOR * limit:
            break  # past all reason: the connection closes with the answer
    # A body over the limit is read to its end and dropped, not cut off: a client that sends its whole body
    # before reading the answer (most do) then gets the 413, not a broken connection.
    if size > limit:
        raise ApiError(413, f"request body of {size / 1e6:.1f} MB or more; at most {limit / 1e6:g} MB "
                            "(--max-body-mb)")
    if not size:
        raise ApiError(400, "empty request body: send a JSON chat completion request")
    try:
        body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"the request body is not JSON ({err})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _parse_request(body: dict[str, Any], answerer: Answerer, tasks: dict[str, str],
                   limits: Limits) -> tuple[Any, Question, str | None]:
    """(waveform, question, task) of a chat completion request; ApiError naming the field otherwise."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), default=None)
    if last is None:
        raise ApiError(400, "no message with role 'user'", param="messages")
    content = messages[last].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise ApiError(400, f"messages[{last}].content must be a string or a list of parts",
                       param=f"messages[{last}].content")
    texts, audio = [], []
    for j, part in enumerate(parts):
        where = f"messages[{last}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            audio.append((where, part["input_audio"]))
        else:
            raise ApiError(400, f"{where}: a part is {{'type': 'text', 'text': ...}} or {{'type': 'input_audio', "
                                "'input_audio': {'data': <base64>, 'format': 'wav'}}", param=where)
    if len(audio) != 1:
        raise ApiError(400, f"messages[{last}] must hold exactly one input_audio part (it has {len(audio)})",
                       param=f"messages[{last}].content")
    where, spec = audio[0]
    data = spec.get("data")
    if not isinstance(data, str) or not data:
        raise ApiError(400, f"{where}.input_audio.data: base64-encoded audio is required", param=where)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}.input_audio.data is not valid base64", param=where) from None
    try:
        wave = checked_wave(raw, answerer.cfg.data.sample_rate, f"{where}.input_audio", limits.max_audio_seconds)
    except InferenceError as err:
        raise ApiError(400, str(err), param=where) from None
    task = body.get("task")
    text = "\n".join(t for t in texts if t.strip()).strip()
    if task is not None:
        if task not in tasks:
            raise ApiError(400, f"task {task!r}: this model answers {', '.join(sorted(tasks))}", param="task")
        if text:
            raise ApiError(400, "give either 'task' or a text instruction, not both", param="task")
        return wave, Question(tasks[task]), task
    if not text:  # no instruction: a conversational reply, as the response task was trained
        name = "response" if "response" in tasks else next(iter(tasks))
        return wave, Question(tasks[name]), name
    return wave, Question(user_template(None, text)), None


async def _stream(completion_id: str, model_id: str, reply: str, extra: dict[str, Any]):
    """The reply as server-sent events in the OpenAI chunk format: role, the whole text, the end (the reply is
    generated before the first byte is sent, so it comes in one content chunk)."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_id}
    for delta, finish in (({"role": "assistant"}, None), ({"content": reply}, None), ({}, "stop")):
        chunk = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])
        if finish:
            chunk["paralign"] = extra
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


@contextmanager
def serving_in_thread(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """``app`` served by uvicorn (as ``paralign serve`` runs it) in a thread of this process, on a free port, until
    the block ends; yields its base URL (the benchmark and the tests talk to it as any client would)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
