"""One request to an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint, with retries.

Shared by the LLM judge and ``paralign qa-generate``. The API key is read from the environment at request time
and never logged, stored or put into an error message.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any


def check_api_key(api_key_env: str | None, who: str) -> None:
    """Fail early, naming the variable (never its value), when the key variable is unset."""
    if api_key_env is not None and not os.environ.get(api_key_env):
        raise ValueError(f"the {who}'s API key variable {api_key_env} is not set in the environment")


def chat_completion(base_url: str, model: str, messages: list[dict[str, str]], *, api_key_env: str | None,
                    max_tokens: int, temperature: float = 0.0, timeout: float = 60.0, http_retries: int = 3,
                    who: str = "chat") -> tuple[str, str | None]:
    """``(content, finish_reason)`` of the first choice. Server errors and unreachable endpoints are retried with
    back-off; client errors (bad key, unknown model) fail at once with a RuntimeError naming the URL."""
    body = json.dumps({"model": model, "messages": messages, "temperature": temperature,
                       "max_tokens": max_tokens}).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if api_key_env is not None:
        headers["Authorization"] = f"Bearer {os.environ.get(api_key_env, '')}"
    url = f"{base_url.rstrip('/')}/chat/completions"
    data: Any = None
    for attempt in range(http_retries + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = json.loads(response.read().decode("utf-8"))
            break
        except urllib.error.HTTPError as err:
            # Client errors (bad key, unknown model) do not get better by asking again.
            if err.code < 500 or attempt == http_retries:
                detail = err.read().decode("utf-8", "replace")[:200]
                raise RuntimeError(f"{who} endpoint {url} answered HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError) as err:
            if attempt == http_retries:
                raise RuntimeError(f"{who} endpoint {url} unreachable: {err}") from None
        time.sleep(min(2 ** attempt, 10))
    try:
        choice = data["choices"][0]
        return choice["message"]["content"] or "", choice.get("finish_reason")
    except (KeyError, IndexError, TypeError):
        raise RuntimeError(f"{who} endpoint {url} returned no choices[0].message.content") from None
