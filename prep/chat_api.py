"""One request to an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint, through the ``openai`` client.

Shared by the LLM judge and ``paralign qa-generate``. The API key is read from the environment at request time
and never logged, kept on the judge or generator, or put into an error message (only the cached client holds it,
in memory, as the environment does).
"""
from __future__ import annotations

import functools
import os

import openai


def check_api_key(api_key_env: str | None, who: str) -> None:
    """Fail early, naming the variable (never its value), when the key variable is unset."""
    if api_key_env is not None and not os.environ.get(api_key_env):
        raise ValueError(f"the {who}'s API key variable {api_key_env} is not set in the environment")


@functools.lru_cache(maxsize=8)
def _client(base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    """One client (and its connection pool) per endpoint, key and retry policy."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)


def chat_completion(base_url: str, model: str, messages: list[dict[str, str]], *, api_key_env: str | None,
                    max_tokens: int, temperature: float = 0.0, timeout: float = 60.0, http_retries: int = 3,
                    who: str = "chat") -> tuple[str, str | None]:
    """``(content, finish_reason)`` of the first choice. The client retries server errors, rate limits and
    unreachable endpoints ``http_retries`` times with back-off; other client errors (bad key, unknown model) fail at
    once. Either way a failure is a RuntimeError naming the URL."""
    url = f"{base_url.rstrip('/')}/chat/completions"
    # The openai client refuses an empty key; an endpoint without one (a local server) gets a placeholder.
    api_key = os.environ.get(api_key_env, "") if api_key_env is not None else "unused"
    client = _client(base_url.rstrip("/"), api_key, timeout, http_retries)
    try:
        completion = client.chat.completions.create(model=model, messages=messages, temperature=temperature,
                                                    max_tokens=max_tokens)
    except openai.APIStatusError as err:
        detail = err.response.text[:200]
        raise RuntimeError(f"{who} endpoint {url} answered HTTP {err.status_code}: {detail}") from None
    except openai.APIConnectionError as err:  # includes timeouts
        raise RuntimeError(f"{who} endpoint {url} unreachable: {err}") from None
    try:
        choice = completion.choices[0]
        return choice.message.content or "", choice.finish_reason
    except (AttributeError, IndexError, TypeError):
        raise RuntimeError(f"{who} endpoint {url} returned no choices[0].message.content") from None
