"""The framing (clips/prompts.py ``Framing``): one place says how the words and the feeling are put to the
LLM, for the teacher, the cascades and the student; the example builder reads the words the recipe names."""
from __future__ import annotations

import random

import pytest

from clips.examples import ExampleBuilder
from clips.members import Variant
from clips.prompts import Framing
from lightning_modules.speech_llm import SpeechLLM
from tests.lightning_modules.conftest import make_clip, tiny_cfg

META = {"transcript": "The bus was late again.", "emotion": "fearful", "style": ["default", "fast"]}


def test_teacher_text_is_the_words_and_the_cue():
    f = Framing(words="{transcript}", cue="({cue})", emotion_cue="I feel {emotion}.", style_cue="")
    assert f.teacher_text(META, Variant.PLAIN) == "The bus was late again."
    assert f.teacher_text(META, Variant.CONDITIONED) == "The bus was late again. (I feel afraid.)"
    styled = Framing(style_cue="I am {styles}.")
    assert styled.teacher_text(META, "conditioned") == "The bus was late again. (I feel afraid. I am speaking fast.)"
    no_cue = {"transcript": "Hi.", "emotion": None, "style": []}
    assert f.teacher_text(no_cue, Variant.CONDITIONED) == "Hi."  # no cue to give


def test_the_commentator_framing_of_the_paper_is_a_recipe_away():
    old = Framing(words='"{transcript}"', cue="({cue})", emotion_cue="The speaker sounds {emotion}.",
                  style_cue="The speaker is {styles}.")
    assert old.teacher_text(META, Variant.CONDITIONED) == ('"The bus was late again." (The speaker sounds afraid. '
                                                           'The speaker is speaking fast.)')


def test_student_reads_the_words_where_the_recipe_says_and_hears_the_speech_where_the_cue_was():
    f = Framing(content="transcript")
    assert f.student_template("{speech}\nHow do I sound?", "the bus {speech} was") == \
        "the bus (speech) was {speech}\nHow do I sound?"  # words never open a second speech slot
    assert Framing(content="speech").student_template("{speech}", "ignored") == "{speech}"
    assert f.cascade_text("words", "sad") == "(I feel sad.)" and f.cascade_text("words") == ""
    assert Framing().cascade_text("words", "sad") == "words (I feel sad.)"


def _builder(content: str, transcripts: str) -> ExampleBuilder:
    model = SpeechLLM(tiny_cfg({"emotion": {}}, prompt={"content": content, "transcripts": transcripts}))
    return ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True)


def test_content_transcript_puts_whispers_words_before_the_speech():
    builder = _builder("transcript", "whisper")
    clip = make_clip(0, 50, heard="words numbr zero")
    (example,) = builder(clip, random.Random(0))
    prefix = builder.prompter.tokenizer.decode(example.prefix)
    assert "words numbr zero" in prefix and "words number 0" not in prefix
    assert example.words == "words numbr zero"
    with pytest.raises(ValueError, match="no Whisper transcript"):
        builder(make_clip(1, 50), random.Random(0))


def test_corpus_transcripts_and_the_end_to_end_path():
    (example,) = _builder("transcript", "corpus")(make_clip(0, 50), random.Random(0))
    assert example.words == "words number 0"
    (speech,) = _builder("speech", "whisper")(make_clip(0, 50), random.Random(0))
    assert speech.words is None  # no transcript in a clip without asr.json: nothing read, nothing needed
    assert "words number" not in _builder("speech", "corpus").prompter.tokenizer.decode(speech.prefix)


def test_online_teacher_reads_the_students_words_under_the_cue():
    """KL against the frozen LLM on text: with content transcript the teacher gets the words the student reads
    (Whisper's) and the cue, so the two prompts differ only where the speech tokens stand."""
    model = SpeechLLM(tiny_cfg({"response": {"loss": "ce+kl", "kl_source": "online"}},
                               prompt={"content": "transcript", "transcripts": "whisper"}))
    builder = ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True)
    clip = make_clip(0, 50, "happy", heard="words numbr zero")
    (example,) = builder(clip, random.Random(0))
    teacher = builder.prompter.tokenizer.decode(example.teacher_prompt)
    assert "words numbr zero (I feel happy.)" in teacher and "words number 0" not in teacher
    speech = SpeechLLM(tiny_cfg({"response": {"loss": "ce+kl", "kl_source": "online"}}, prompt={"content": "speech"}))
    (example,) = ExampleBuilder(speech.tasks, speech.llm.prompter, all_tasks=True)(clip, random.Random(0))
    assert "words number 0 (I feel happy.)" in speech.llm.prompter.tokenizer.decode(example.teacher_prompt)


def test_perceive_puts_the_true_cue_after_the_speech_in_training_and_leaves_the_template_bare():
    f = Framing(perceive=True)
    assert f.with_cue("{speech}", "sad") == "{speech} (I feel sad.)" and f.with_cue("{speech}", None) == "{speech}"
    model = SpeechLLM(tiny_cfg({"response": {}, "emotion": {}}, prompt={"perceive": True}))
    builder = ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True)
    examples = {e.task: e for e in builder(make_clip(0, 50, "happy"), random.Random(0))}
    decode = builder.prompter.tokenizer.decode
    assert "(I feel happy.)" in decode(examples["response"].suffix)
    assert examples["response"].template == "{speech}"  # generation puts the perceived cue there instead
    assert "I feel" not in decode(examples["emotion"].prefix + examples["emotion"].suffix)
