"""Chat prompts with a speech slot, tokenised once per template through the LLM's own chat template.

Kept apart from the model so that DataLoader workers can build token ids without holding LLM weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

SPEECH_PLACEHOLDER = "<|speech|>"


@dataclass(frozen=True)
class PromptParts:
    """Token ids of a chat prompt, split around the speech span."""

    prefix: list[int]
    suffix: list[int]  # ends with the assistant header: the reply follows


class ChatPrompter:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None = None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the LLM's tokenizer has no chat template; an instruct model is needed")
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.eos_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self._parts_cache: dict[str, PromptParts] = {}

    def render(self, user_content: str) -> str:
        """The full chat prompt (system, user turn, assistant header) as text."""
        messages = [{"role": "user", "content": user_content}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_parts(self, user_template: str) -> PromptParts:
        """Split a user turn containing ``{speech}`` into token ids before and after the speech span (cached)."""
        cached = self._parts_cache.get(user_template)
        if cached is not None:
            return cached
        if user_template.count("{speech}") != 1:
            raise ValueError(f"a prompt template needs exactly one {{speech}} slot: {user_template!r}")
        text = self.render(user_template.replace("{speech}", SPEECH_PLACEHOLDER))
        before, after = text.split(SPEECH_PLACEHOLDER)
        parts = PromptParts(self.encode(before), self.encode(after))
        self._parts_cache[user_template] = parts
        return parts

    def text_prompt_ids(self, user_template: str, speech_text: str) -> list[int]:
        """A teacher prompt: the speech span replaced by words, the same template tokens around it."""
        parts = self.prompt_parts(user_template)
        return parts.prefix + self.encode(speech_text) + parts.suffix

    def reply_ids(self, reply: str, max_tokens: int | None = None) -> list[int]:
        """Target tokens: the reply (cut to ``max_tokens``) and the end-of-turn token the model must stop with."""
        ids = self.encode(reply)
        return (ids[:max_tokens] if max_tokens else ids) + [self.eos_id]

    def check_alignment(self, user_template: str, speech_text: str) -> None:
        """Fail loudly unless the teacher prompt, tokenised whole, equals prefix + words + suffix.

        A mismatch means the student (speech in the slot) and the teacher (words in the slot) see different
        template tokens, so distillation would silently teach the wrong thing.
        """
        whole = self.encode(self.render(user_template.replace("{speech}", speech_text)))
        spliced = self.text_prompt_ids(user_template, speech_text)
        if whole != spliced:
            at = next((i for i, (a, b) in enumerate(zip(whole, spliced)) if a != b), min(len(whole), len(spliced)))
            raise ValueError(
                "teacher and student prompts do not share the chat template token for token "
                f"(template {user_template!r}, first difference at token {at}: "
                f"{self.tokenizer.decode(whole[max(0, at - 3):at + 3])!r} vs "
                f"{self.tokenizer.decode(spliced[max(0, at - 3):at + 3])!r}); put whitespace around {{speech}} "
                "so that it falls on a token boundary"
            )
