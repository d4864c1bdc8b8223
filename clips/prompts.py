"""Chat prompts with a speech slot, tokenised once per template through the LLM's own chat template.

Kept apart from the model so that DataLoader workers can build token ids without holding LLM weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from clips.clip import Clip
from clips.members import Variant
from clips.vocab import EMOTION_ADJECTIVE, STYLE_PHRASE, marked_styles

SPEECH_PLACEHOLDER = "<|speech|>"
SPEECH_SLOT = "{speech}"


@dataclass(frozen=True)
class Framing:
    """The one place that says how the words and the feeling of a clip are put to the frozen LLM (recipe
    ``prompt``): the teacher's text in the speech slot, the cascades' text, and the student's slot.

    Teacher (conditioned): ``words`` then ``cue`` around the emotion (and style) in words, e.g. ``My grandmother
    turns ninety this year. (I feel sad.)``; plain: the words alone. Student, ``content="speech"``: the speech
    tokens stand in for all of it; ``content="transcript"``: the words (Whisper's) as text and the speech tokens
    where the teacher read the cue, so the speech has one job left, how it was said.
    """

    version: str = "conversational-v1"
    words: str = "{transcript}"
    cue: str = "({cue})"
    emotion_cue: str = "I feel {emotion}."
    style_cue: str = ""
    content: str = "speech"
    transcripts: str = "whisper"  # whose words the student reads: whisper (``<key>.asr.json``) | corpus
    perceive: bool = False  # the response task's prompt has the feeling's cue after the speech (recipe prompt.*)
    reply_from: str = "speech"  # perceive's reply: from the speech tokens and the cue, or the cue as text alone

    @classmethod
    def from_recipe(cls, prompt) -> "Framing":
        return cls(prompt.version, prompt.words, prompt.cue, prompt.emotion_cue, prompt.style_cue, prompt.content,
                   prompt.transcripts, prompt.get("perceive", False), prompt.get("reply_from", "speech"))

    def heard_words(self, clip: Clip) -> str:
        """The words a listener got from a clip: Whisper's transcript cached in the shard, or the corpus's."""
        if self.transcripts == "corpus":
            words = clip.meta.get("transcript")
        else:
            words = clip.heard
            if words is None:
                raise ValueError(f"clip {clip.key} has no Whisper transcript (<key>.asr.json): `paralign data` "
                                 "makes them for prompt.content=transcript, or set prompt.transcripts=corpus")
        return words or ""

    def feeling(self, emotion: str | None, styles: list[str] | None = None) -> str:
        """The cue's words for an emotion (and styles, where ``style_cue`` is set); empty when there is none."""
        notes = []
        if emotion:
            notes.append(self.emotion_cue.replace("{emotion}", EMOTION_ADJECTIVE[emotion]))
        marked = marked_styles(styles)
        if self.style_cue and marked:
            phrases = [STYLE_PHRASE[s] for s in marked]
            joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
            notes.append(self.style_cue.replace("{styles}", joined))
        return " ".join(notes)

    def said(self, words: str) -> str:
        return self.words.replace("{transcript}", words)

    def text(self, words: str, emotion: str | None = None, styles: list[str] | None = None) -> str:
        """What a text-only reader gets where the speech would go: the words, and the cue when one is given."""
        feeling = self.feeling(emotion, styles)
        return f"{self.said(words)} {self.cue.replace('{cue}', feeling)}" if feeling else self.said(words)

    def teacher_text(self, meta: dict, variant: Variant | str, words: str | None = None) -> str:
        """What the teacher reads in the speech slot: the clip's corpus transcript (or ``words``), with the cue of
        its emotion (and style) for the conditioned variant."""
        words = meta["transcript"] if words is None else words
        if Variant(variant) is Variant.PLAIN:
            return self.said(words)
        return self.text(words, meta.get("emotion"), meta.get("style"))

    def cascade_text(self, words: str, emotion: str | None = None, styles: list[str] | None = None) -> str:
        """What a text-only system reads in the student's speech slot: the words and the cue (when an emotion is
        given); with ``content="transcript"`` the words are before the slot already, so the cue alone."""
        if self.content == "speech":
            return self.text(words, emotion, styles)
        feeling = self.feeling(emotion, styles)
        return self.cue.replace("{cue}", feeling) if feeling else ""

    def with_cue(self, template: str, emotion: str | None) -> str:
        """A template with the emotion's cue right after the speech slot (``perceive``); unchanged without one."""
        feeling = self.feeling(emotion)
        if not feeling:
            return template
        return template.replace(SPEECH_SLOT, f"{SPEECH_SLOT} {self.cue.replace('{cue}', feeling)}")

    def student_template(self, template: str, words: str | None) -> str:
        """A task's user-turn template as the student gets it: unchanged for ``content="speech"``; with the words
        before the speech slot for ``content="transcript"``."""
        if self.content == "speech":
            return template
        if words is None:
            raise ValueError("prompt.content=transcript needs the clip's transcript")
        return template.replace(SPEECH_SLOT, f"{self.said(_literal(words))} {SPEECH_SLOT}")


def _literal(text: str) -> str:
    """Words put into a template: braces doubled would be read back as such, so they are dropped instead."""
    return text.replace("{", "(").replace("}", ")")


@dataclass(frozen=True)
class PromptParts:
    """Token ids of a chat prompt, split around the speech span."""

    prefix: list[int]
    suffix: list[int]  # ends with the assistant header: the reply follows


class ChatPrompter:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None = None,
                 framing: Framing | None = None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the LLM's tokenizer has no chat template; an instruct model is needed")
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.framing = framing or Framing()
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
        if len(self._parts_cache) < 4096:  # a template holding a clip's words (content: transcript) is one-off
            self._parts_cache[user_template] = parts
        return parts

    def text_prompt_ids(self, user_template: str, speech_text: str) -> list[int]:
        """A text reader's prompt: the speech span replaced by words, the same template tokens around it."""
        parts = self.prompt_parts(user_template)
        return parts.prefix + self.encode(speech_text) + parts.suffix

    # ---- the prompts of each reader of a clip, built here only --------------------------------------------------
    def student_template(self, template: str, words: str | None) -> str:
        """A task's user turn as the student gets it (``Framing.student_template``): what ``Example.template``
        holds and generation rebuilds a cue from."""
        return self.framing.student_template(template, words)

    def cued_parts(self, student_template: str, cue: str | None = None) -> PromptParts:
        """The student's prompt around the speech slot, with ``cue``'s feeling right after the speech (perceive:
        the true emotion in training, the one the model named at generation; None: no cue)."""
        return self.prompt_parts(self.framing.with_cue(student_template, cue))

    def teacher_ids(self, template: str, meta: dict, variant: Variant | str, words: str | None = None) -> list[int]:
        """The teacher's prompt for a clip (``Framing.teacher_text`` in the slot), token for token the student's
        around it."""
        return self.text_prompt_ids(template, self.framing.teacher_text(meta, variant, words))

    def reader_ids(self, template: str, words: str, emotion: str | None = None) -> list[int]:
        """A text-only reader of the words under an emotion's cue (None: the words alone): the reply-level
        controls, scored like the teacher they stand for."""
        return self.text_prompt_ids(template, self.framing.text(words, emotion))

    def cascade_ids(self, student_template: str, words: str, emotion: str | None = None,
                    styles: list[str] | None = None) -> list[int]:
        """A cascade's prompt: the student's, with text where the speech goes (``Framing.cascade_text``: the words
        and, given an emotion, its cue; only the cue where the words precede the slot already)."""
        return self.text_prompt_ids(student_template, self.framing.cascade_text(words, emotion, styles))

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
