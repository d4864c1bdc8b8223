"""Method 2 (implicit): QA parsing, every filter, and `paralign qa-generate` end to end on the tiny corpus."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from omegaconf import OmegaConf

from clips.shard_writer import shard_files
from clips.tar_samples import iter_tar_samples
from paralign.cli import main
from paralign.config import QAGenerationConfig
from prep import qa_generate
from prep.qa_generate import (
    CACHE_NAME,
    QAFilter,
    check_pair,
    fill_template,
    generate_qa,
    is_current,
    line_question_type,
    load_template,
    parse_reply,
    select_pairs,
)
from prep.tiny_corpus import build_tiny_corpus
from tests.evaluation.test_judge import KEY, FakeChatServer

GOOD = ('[{"question": "What is the weather like?", "answer": "It is raining.", "type": "content"}, '
        '{"question": "How might the speaker feel about their plans?", "answer": "Let down; the rain spoils them.", '
        '"type": "Content + Emotion"}]')
RULES = QAFilter(max_question_words=12, max_answer_words=12, forbid_label_in_question=True, max_pairs=3)


def test_parse_reply_tolerates_fences_prose_and_wrappers():
    assert len(parse_reply(GOOD)) == 2
    assert len(parse_reply(f"Sure! Here you go:\n```json\n{GOOD}\n```\nHope this helps.")) == 2
    assert parse_reply('{"pairs": [{"question": "q", "answer": "a"}]}') == [{"question": "q", "answer": "a"}]
    assert parse_reply('{"question": "q", "answer": "a", "type": "content"}')[0]["question"] == "q"
    for garbage in ("", "I cannot do that.", "5", '[{"question": "cut off', '{"other": 1}'):
        assert parse_reply(garbage) is None, garbage


@pytest.mark.parametrize("item, reason", [
    ("just a string", "not_an_object"),
    ({"question": "Where?", "type": "content"}, "empty"),
    ({"question": "  ", "answer": "Home.", "type": "content"}, "empty"),
    ({"question": "Where?", "answer": "Home.", "type": "trivia"}, "bad_type"),
    ({"question": "Where?", "answer": "Home.", "type": None}, "bad_type"),
    ({"question": "Where " * 13, "answer": "Home.", "type": "content"}, "too_long"),
    ({"question": "Where?", "answer": "far " * 13, "type": "content"}, "too_long"),
    ({"question": "Where is it?", "answer": "where is it", "type": "content"}, "answer_repeats_question"),
    ({"question": "Where is it?", "answer": "Where is it? Yes.", "type": "content"}, "answer_repeats_question"),
    ({"question": "Why is the speaker sad?", "answer": "The rain.", "type": "content+emotion"}, "label_leak"),
    ({"question": "Is the speaker SAD about it?", "answer": "Yes, a bit.", "type": "content+emotion"}, "label_leak"),
])
def test_every_filter_rejects_with_its_reason(item, reason):
    assert check_pair(item, "sad", RULES) == (None, reason)


def test_good_pairs_pass_and_the_leak_filter_is_configurable():
    pair, reason = check_pair({"question": " Why  so down? ", "answer": "The rain.", "type": "content_emotion"},
                              "sad", RULES)
    assert reason is None and pair == {"question": "Why so down?", "answer": "The rain.", "type": "content+emotion"}
    leak = {"question": "Why is the speaker afraid?", "answer": "A noise outside.", "type": "content+emotion"}
    assert check_pair(leak, "fearful", RULES)[1] == "label_leak"  # the label's adjective counts too
    allow = QAFilter(forbid_label_in_question=False)
    assert check_pair(leak, "fearful", allow)[1] is None


def test_select_pairs_deduplicates_caps_and_counts():
    items = [{"question": f"Question number {i}?", "answer": f"Answer {i}.", "type": "content"} for i in range(5)]
    items.insert(1, {"question": "question NUMBER 0", "answer": "Another.", "type": "content"})
    rejected: Counter = Counter()
    kept = select_pairs(json.dumps(items), "sad", RULES, rejected)
    assert [p["question"] for p in kept] == ["Question number 0?", "Question number 1?", "Question number 2?"]
    assert rejected == {"duplicate": 1, "surplus": 2}
    assert select_pairs("no json here", "sad", RULES, rejected) == [] and rejected["unparsable_reply"] == 1


def test_template_is_versioned_and_filled():
    text = fill_template(load_template("v1"), {"transcript": " it is raining ", "emotion": "sad", "valence": 1.84,
                                               "arousal": None, "dominance": 2.4}, pairs=3)
    assert 'Transcript: "it is raining"' in text and "Emotion category: sad" in text
    assert "Valence (1 = very negative, 5 = very positive): 1.8" in text and "): unknown" in text
    assert "Write 3 question-answer pairs" in text and "{" in text  # the JSON example keeps its braces
    with pytest.raises(ValueError, match="versions: v1"):
        load_template("v999")


class FakeGenerator:
    """Crafted JSON about each prompt's transcript; ``fail_after`` simulates a crash mid-run."""

    generator_id = "fake:crafted"

    def __init__(self, fail_after: int | None = None):
        self.asked: list[str] = []
        self.fail_after = fail_after

    def replies(self, prompts):
        for i, prompt in enumerate(prompts):
            if self.fail_after is not None and len(self.asked) >= self.fail_after:
                raise KeyboardInterrupt("cut")
            self.asked.append(prompt)
            said = re.search(r'(?:Transcript|Someone said): "(.*)"', prompt).group(1)
            emotion = re.search(r"(?:Emotion category:|They sounded) (\w+)", prompt).group(1)
            yield [i], [json.dumps([
                {"question": "What did the speaker say?", "answer": f"They said {said}.", "type": "content"},
                {"question": f"Why does the speaker sound {emotion}?", "answer": "No idea.", "type": "content+emotion"},
                {"question": "How should I answer them?", "answer": f"Kindly, since they said {said}.",
                 "type": "content+emotion"},
                {"question": "What did the speaker say?", "answer": "Again.", "type": "content"}])]


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("qa") / "base"
    build_tiny_corpus(base)
    return base


def settings(**kw):
    return OmegaConf.merge(OmegaConf.structured(QAGenerationConfig), kw)


def read_qa(folder):
    out = {}
    for shard in shard_files(folder):
        with open(shard, "rb") as f:
            for s in iter_tar_samples(f):
                out[s["__key__"]] = (json.loads(s["json"]), json.loads(s["qa.json"]) if "qa.json" in s else None,
                                     "flac" in s and "teacher.json" in s)
    return out


def test_happy_path_writes_new_shards_and_resumes(tiny_shards, tmp_path):
    out = tmp_path / "qa"
    gen = FakeGenerator(fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        generate_qa(settings(pairs=3), tiny_shards, out, generator=gen)
    assert len((out / CACHE_NAME).read_text().splitlines()) == 5  # what was generated before the cut is kept
    gen = FakeGenerator()
    summary = generate_qa(settings(pairs=3), tiny_shards, out, generator=gen)
    # 6 sentences x 4 emotions cycle every 12 clips: identical prompts are asked once
    assert summary.clips == 24 and summary.unique_prompts == 12
    assert summary.from_cache == 5 and summary.generated == len(gen.asked) == 7
    assert summary.kept == {"content": 24, "content+emotion": 24}
    assert summary.rejected == {"label_leak": 24, "duplicate": 24}
    clips = read_qa(out)
    assert len(clips) == 24 and all(members for _, _, members in clips.values())  # audio and teacher copied
    meta, pairs, _ = clips["tiny_0000"]
    assert [p["type"] for p in pairs] == ["content", "content+emotion"]
    assert pairs[0]["answer"] == f"They said {meta['transcript']}." and pairs[0]["prompt_version"] == "qa_generate_v1"
    assert pairs[0]["generator"] == "fake:crafted"
    assert json.loads((out / "qa_summary.json").read_text())["kept"]["content"] == 24
    again = FakeGenerator()
    assert generate_qa(settings(pairs=3), tiny_shards, out, generator=again).generated == 0 and not again.asked
    with pytest.raises(ValueError, match="must differ"):
        generate_qa(settings(), tiny_shards, tiny_shards, generator=again)


def test_share_asks_about_a_stable_subset(tiny_shards, tmp_path):
    from prep.teacher import in_share

    chosen = {meta["id"] for meta, _, _ in read_qa(tiny_shards).values() if in_share(meta["id"], 0.5)}
    assert 0 < len(chosen) < 24
    summary = generate_qa(settings(pairs=3, share=0.5), tiny_shards, tmp_path / "qa", generator=FakeGenerator())
    assert summary.skipped["outside qa_generation.share"] == 24 - len(chosen)
    clips = read_qa(tmp_path / "qa")
    assert {meta["id"] for meta, pairs, _ in clips.values() if pairs} == chosen and len(clips) == 24  # all copied
    with pytest.raises(ValueError, match="qa_generation.share"):
        generate_qa(settings(share=0.0), tiny_shards, tmp_path / "qa2", generator=FakeGenerator())


def test_tiny_llm_garbage_is_counted_as_rejected_and_stops_the_run(tiny_shards, tmp_path, capsys):
    out = tmp_path / "qa"
    with pytest.raises(SystemExit, match="kept no pair from 2 replies.*prompt_version=v2"):
        main(["qa-generate", "--shards", str(tiny_shards), "--out", str(out), "--model", "tiny",
              "--max-new-tokens", "12", "--batch-size", "8", "--splits", "test"])
    printed = capsys.readouterr().out  # 4 test clips, 2 distinct prompts
    assert "2 unique prompts (0 from the cache, 2 generated); 0 pairs kept" in printed
    assert "rejected unparsable_reply: 4" in printed and "skipped clips, split not selected: 20" in printed
    assert not (out / "qa_summary.json").exists()  # so `paralign data` / train cannot go on without QA pairs
    clips = read_qa(out).values()
    assert all(q == [] if m["split"] == "test" else q is None for m, q, _ in clips)  # asked: an empty list


def test_openai_compatible_endpoint(tiny_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("QA_TEST_KEY", KEY)
    with FakeChatServer([f"```json\n{GOOD}\n```"]) as srv:
        summary = generate_qa(settings(base_url=srv.url, model="big-model", api_key_env="QA_TEST_KEY",
                                       splits=["val"]), tiny_shards, tmp_path / "qa")
    assert summary.generated == len(srv.requests) == 2  # 4 val clips, 2 distinct prompts
    body = srv.requests[0]["body"]
    assert body["model"] == "big-model" and "Transcript:" in body["messages"][0]["content"]
    assert summary.kept == {"content": 4, "content+emotion": 4}
    monkeypatch.delenv("QA_TEST_KEY")
    with pytest.raises(SystemExit, match="QA_TEST_KEY is not set"):
        main(["qa-generate", "--shards", str(tiny_shards), "--out", str(tmp_path / "x"), "--base-url", srv.url,
              "--api-key-env", "QA_TEST_KEY"])


# What SmolLM2-135M writes after the v2 prompt and the reply prefix "Question:" (a real reply, shortened).
LINE_REPLY = ('Question: "What did the person say they didn\'t get?"\n\nAnswer: "They said they didn\'t get the '
              'house."\n\nIn this context, the person\'s response is not just about the house itself.')


def test_line_replies_are_parsed_and_typed_by_the_prompt():
    assert parse_reply(LINE_REPLY) == [{"question": "What did the person say they didn't get?",
                                        "answer": "They said they didn't get the house."}]  # the rambling after: cut
    two = "question 1: Where?\nanswer 1: Home.\n\nQuestion 2: When?\n\nAnswer 2: Now."
    assert [p["answer"] for p in parse_reply(two)] == ["Home.", "Now."]
    assert parse_reply("Question: What happened?") is None  # no answer, nothing to train on
    rejected: Counter = Counter()
    kept = select_pairs(LINE_REPLY, "sad", QAFilter(), rejected, question_type="content")
    assert [p["type"] for p in kept] == ["content"] and not rejected
    assert select_pairs(LINE_REPLY, "sad", QAFilter(), rejected) == [] and rejected == {"bad_type": 1}  # untyped


def test_line_template_asks_one_type_per_clip_by_turns():
    meta = {"transcript": "We didn't get the house.", "emotion": "sad", "valence": 1.8, "arousal": 2.1,
            "dominance": 2.4}
    template = load_template("v2")
    feel = fill_template(template, meta, pairs=1, question_type="content+emotion")
    assert 'Someone said: "We didn\'t get the house."' in feel and "They sounded sad (valence 1.8, arousal 2.1" in feel
    assert "takes into account how they feel" in feel and "{" not in feel
    assert "how they feel" not in fill_template(template, meta, pairs=1, question_type="content")
    with pytest.raises(ValueError, match="a line template asks one of"):
        fill_template(template, meta, pairs=1)
    types = Counter(line_question_type(f"clip-{i}") for i in range(200))
    assert set(types) == {"content", "content+emotion"} and min(types.values()) > 70
    assert line_question_type("clip-7") == line_question_type("clip-7")


def test_a_template_needs_every_placeholder_and_one_format(tmp_path, monkeypatch):
    monkeypatch.setattr(qa_generate, "PROMPT_DIR", tmp_path)
    fields = "{transcript} {emotion} {valence} {arousal} {dominance}"
    (tmp_path / "qa_generate_both.txt").write_text(f"{fields} {{pairs}} {{instruction}}")
    (tmp_path / "qa_generate_none.txt").write_text(fields)
    (tmp_path / "qa_generate_short.txt").write_text("{transcript} {pairs}")
    for version in ("both", "none"):
        with pytest.raises(ValueError, match="exactly one of {pairs} and {instruction}"):
            load_template(version)
    with pytest.raises(ValueError, match="lacks {emotion}, {valence}"):
        load_template("short")


def test_line_template_with_the_local_generator_and_a_changed_recipe(tiny_shards, tmp_path):
    """v2 + reply prefix end to end with a real (tiny) local model: the prefix starts every stored reply; the
    summary's fingerprint says whether the QA shards match the recipe."""
    from prep.qa_generate import LocalGenerator

    line = settings(prompt_version="v2", reply_prefix="Question:", pairs=1, max_new_tokens=6, splits=["test"])
    generator = LocalGenerator("tiny", max_new_tokens=6, batch_size=4, reply_prefix="Question:")
    out = tmp_path / "qa"
    with pytest.raises(RuntimeError, match="kept no pair"):  # a random model's lines do not parse
        generate_qa(line, tiny_shards, out, generator=generator)
    replies = [json.loads(x)["reply"] for x in (out / CACHE_NAME).read_text().splitlines()]
    assert replies and all(r.startswith("Question:") for r in replies)
    assert not is_current(line, out)
    generate_qa(line, tiny_shards, out, generator=FakeGenerator())
    assert is_current(line, out) and not is_current(settings(prompt_version="v2", reply_prefix="Q:", pairs=1,
                                                             max_new_tokens=6, splits=["test"]), out)
    with pytest.raises(ValueError, match="reply_prefix starts a local model's reply"):
        qa_generate.build_generator(settings(base_url="http://localhost:1/v1", reply_prefix="Question:"))
