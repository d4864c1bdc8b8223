"""Teacher replies cached in the shards, with the tiny random Llama (weights made sharp so that replies depend on
the prompt token by token; with its default init it repeats one token whatever it is asked)."""
from __future__ import annotations

import argparse
import functools
import json
import shutil
from pathlib import Path

import pytest
import torch

import prep.teacher as teacher_mod
from clips.shard_writer import shard_files, write_shards
from clips.tar_samples import iter_tar_samples
from clips.vocab import EMOTION_ADJECTIVE
from lightning_modules.speech_llm import load_frozen_llm
from paralign.benchmarks.teacher import bench_prompts, teacher_throughput
from paralign.commands import teacher as teacher_cmd
from paralign.recipe_loading import load_recipe
from prep.jsonl_cache import read_cache
from prep.teacher import CACHE_NAME, generate_batch, generate_teacher_replies
from prep.tiny_corpus import tiny_records

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def recipe(*overrides: str):
    return load_recipe(RECIPE, ["teacher.max_new_tokens=6", "teacher.batch_size=5", *overrides])


@pytest.fixture(scope="module")
def llm():
    model = load_frozen_llm(recipe())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, weight in model.model.named_parameters():
            if "norm" not in name:
                weight.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """24 tiny clips (12 distinct sentence+emotion pairs, 6 sentences) in 4 shards over train/val/test; one clip
    has styles, one has no transcript. The records carry templated response replies (model "template")."""
    root = tmp_path_factory.mktemp("teacher_corpus")
    records = tiny_records(root / "audio")
    records[1]["style"] = ["whispered", "fast"]
    records[2]["transcript"] = None
    write_shards(records, root / "shards", max_count=8, progress=False)
    return root / "shards"


@pytest.fixture
def shards(corpus: Path, tmp_path: Path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(corpus, out)
    return out


@pytest.fixture
def counted(llm, monkeypatch):
    """Counts the prompts that reach the LLM's generate()."""
    calls = {"rows": 0}
    real = llm.model.generate

    def generate(*args, **kwargs):
        calls["rows"] += kwargs["input_ids"].shape[0]
        return real(*args, **kwargs)

    monkeypatch.setattr(llm.model, "generate", generate)
    return calls


def samples(folder: Path) -> dict[str, dict]:
    out = {}
    for shard in shard_files(folder):
        with open(shard, "rb") as f:
            for s in iter_tar_samples(f):
                out[s["__key__"]] = {"meta": json.loads(s["json"]),
                                     "teacher": json.loads(s["teacher.json"]) if "teacher.json" in s else None,
                                     "members": set(s) - {"__key__"}}
    return out


def reply_alone(llm, template: str, meta: dict, variant: str, max_new_tokens: int = 6) -> str:
    ids = llm.prompter.teacher_ids(template, meta, variant)
    return _generate_alone(llm, tuple(ids), max_new_tokens)


@functools.lru_cache(maxsize=None)
def _generate_alone(llm, ids: tuple[int, ...], max_new_tokens: int) -> str:
    reply = generate_batch(llm, [list(ids)], max_new_tokens)[0]
    return llm.prompter.tokenizer.decode(reply, skip_special_tokens=True).strip()


@pytest.mark.slow  # 19 prompts generated, then each again alone
def test_replies_land_in_every_sample_once_per_unique_prompt(llm, shards, counted):
    summary = generate_teacher_replies(recipe(), shards, llm=llm)
    # 23 clips with a transcript: 12 sentence+emotion pairs + 6 plain prompts (the cue leaves styles out here)
    assert summary.unique_prompts == 18 and summary.generated == 18 and counted["rows"] == 18
    assert summary.entries == 46 and summary.skipped["no transcript"] == 1
    result = samples(shards)
    assert len(result) == 24
    for key, s in result.items():
        assert {"json", "flac", "teacher.json"} <= s["members"]
        if s["meta"]["transcript"] is None:
            assert s["teacher"]["response"]["plain"]["model"] == "template"  # untouched
            continue
        for variant in ("conditioned", "plain"):
            entry = s["teacher"]["response"][variant]
            assert entry["model"] == "tiny"
            assert entry["generation"]["max_new_tokens"] == 6 and entry["generation"]["do_sample"] is False
            assert s["meta"]["transcript"] in entry["prompt"] and entry["prompt"].startswith("<|im_start|>user")
            assert "topk" not in entry
            # the reply stored with this clip is the one its own prompt gets, alone
            assert entry["reply"] == reply_alone(llm, "{speech}", s["meta"], variant)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["samples"] == 24


def test_merge_keeps_other_tasks_and_variants(llm, shards, tmp_path):
    out = tmp_path / "out"
    generate_teacher_replies(recipe("teacher.tasks=[emotion]", "teacher.variants=[plain]"), shards, out, llm=llm)
    for s in samples(out).values():
        if s["meta"]["transcript"] is None:
            continue
        assert set(s["teacher"]) == {"response", "emotion"}
        assert s["teacher"]["response"]["conditioned"]["model"] == "template"  # from the corpus, kept
        assert set(s["teacher"]["emotion"]) == {"plain"}
        assert "How is the speaker feeling?" in s["teacher"]["emotion"]["plain"]["prompt"]
    assert (out / CACHE_NAME).exists() and not (shards / CACHE_NAME).exists()
    assert all(s["teacher"]["response"]["plain"]["model"] == "template" for s in samples(shards).values())


def test_batched_left_padded_generation_equals_one_at_a_time(llm):
    prompts = [llm.prompter.text_prompt_ids("{speech}", f'"{"so " * n}it goes"') for n in (0, 3, 1, 7, 2)]
    assert len({len(p) for p in prompts}) == 5
    batched = generate_batch(llm, prompts, 10)
    alone = [generate_batch(llm, [p], 10)[0] for p in prompts]
    assert batched == alone
    assert len({tuple(r) for r in batched}) == 5  # replies depend on the prompt, so the check has teeth


def test_resume_after_interruption_does_not_regenerate(llm, shards, counted, monkeypatch, caplog):
    real = teacher_mod.generate_batch
    batches = []

    def cut_after_two(*args, **kwargs):
        if len(batches) == 2:
            raise KeyboardInterrupt
        batches.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_mod, "generate_batch", cut_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate_teacher_replies(recipe(), shards, llm=llm)
    assert len((shards / CACHE_NAME).read_text().splitlines()) == 10  # two batches of 5, kept
    assert all(s["teacher"]["response"]["plain"]["model"] == "template" for s in samples(shards).values())
    with open(shards / CACHE_NAME, "a", encoding="utf-8") as f:
        f.write('{"hash": "0123", "rep')  # a line cut mid-write
    monkeypatch.setattr(teacher_mod, "generate_batch", real)
    counted["rows"] = 0
    summary = generate_teacher_replies(recipe(), shards, llm=llm)
    # 18 unique prompts: a clip without an emotion gets no cue, so its conditioned prompt is its plain one
    assert summary.from_cache == 10 and summary.generated == 8 and counted["rows"] == 8
    assert "1 unreadable lines ignored" in caplog.text
    assert len(read_cache(shards / CACHE_NAME)) == 18
    again = generate_teacher_replies(recipe(), shards, llm=llm)
    assert again.generated == 0 and counted["rows"] == 8
    assert all(s["teacher"]["response"]["plain"]["model"] == "tiny"
               for s in samples(shards).values() if s["meta"]["transcript"])


@pytest.mark.slow
def test_topk_has_one_row_of_k_per_target_token(llm, shards):
    generate_teacher_replies(recipe("teacher.topk=3", "teacher.variants=[conditioned]"), shards, llm=llm)
    seen = 0
    for s in samples(shards).values():
        entry = s["teacher"]["response"]["conditioned"]
        if entry["model"] != "tiny":
            continue
        assert entry["generation"]["topk"] == 3
        n = len(llm.prompter.reply_ids(entry["reply"]))  # the student's target: reply tokens + end of turn
        ids, logprobs = entry["topk"]["ids"], entry["topk"]["logprobs"]
        assert len(ids) == len(logprobs) == n
        assert all(len(row) == 3 for row in ids) and all(len(row) == 3 for row in logprobs)
        assert all(row == sorted(row, reverse=True) and row[0] <= 0 for row in logprobs)
        seen += 1
    assert seen == 23


def test_topk_positions_follow_the_target_tokens(llm):
    prompts = [llm.prompter.text_prompt_ids("{speech}", f'"{"so " * n}it goes"') for n in (0, 4)]
    replies = generate_batch(llm, prompts, 8)
    topk = teacher_mod.reply_topk(llm, prompts, [r + [llm.eos_id] for r in replies], 2)
    for reply, tk in zip(replies, topk):
        # greedy: the teacher's top token at each target position is the token it generated there
        assert [row[0] for row in tk["ids"][:-1]] == reply and len(tk["ids"]) == len(reply) + 1


def test_conditioned_and_plain_prompts_differ_by_the_recipes_cue(llm, shards):
    # the recipe's framing (prompt.*) writes the cue: here the emotion and the styles, in brackets after the words
    cfg = recipe("prompt.cue='[{cue}]'", "prompt.emotion_cue=I feel {emotion}.", "prompt.style_cue=I am {styles}.")
    generate_teacher_replies(cfg, shards, llm=llm)
    styled = [s for s in samples(shards).values() if s["meta"]["style"] == ["whispered", "fast"]]
    assert len(styled) == 1
    meta, entries = styled[0]["meta"], styled[0]["teacher"]["response"]
    cue = f" [I feel {EMOTION_ADJECTIVE[meta['emotion']]}. I am whispering and speaking fast.]"
    words = meta["transcript"]
    assert entries["conditioned"]["prompt"] == entries["plain"]["prompt"].replace(words, words + cue)
    assert entries["conditioned"]["generation"]["framing"] == cfg.prompt.version


def test_a_new_framing_version_asks_the_teacher_again(llm, shards):
    first = generate_teacher_replies(recipe(), shards, llm=llm)
    again = generate_teacher_replies(recipe("prompt.version=another"), shards, llm=llm)
    assert first.unique_prompts == again.unique_prompts and again.from_cache == 0


@pytest.mark.slow
def test_empty_replies_are_counted_and_not_stored(llm, shards, monkeypatch, caplog):
    real = teacher_mod.generate_batch
    said = llm.prompter.encode("all done now")

    def silent_on_one_sentence(llm_, prompts, *args, **kwargs):
        replies = real(llm_, prompts, *args, **kwargs)
        has = [any(p[i:i + len(said)] == said for i in range(len(p))) for p in prompts]
        return [[] if h else r for h, r in zip(has, replies)]

    monkeypatch.setattr(teacher_mod, "generate_batch", silent_on_one_sentence)
    summary = generate_teacher_replies(recipe("teacher.tasks=[asr]"), shards, llm=llm)
    # "all done now" is sentence 4 of 6: clips 4, 10, 16, 22, two emotions, and one plain prompt
    assert summary.empty_replies == 3 and summary.empty_entries == 8
    assert "empty reply" in caplog.text
    for s in samples(shards).values():
        if s["meta"]["transcript"] == "all done now":
            assert "asr" not in s["teacher"]
        elif s["meta"]["transcript"]:
            assert s["teacher"]["asr"]["plain"]["reply"]


def test_bad_teacher_settings_are_named(llm, shards):
    with pytest.raises(ValueError, match="unknown variant 'loud'"):
        generate_teacher_replies(recipe("teacher.variants=[loud]"), shards, llm=llm)
    with pytest.raises(ValueError, match="qa-generate"):
        generate_teacher_replies(recipe("teacher.tasks=[qa]"), shards, llm=llm)


def test_command_runs_on_the_recipe_shards(shards, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    teacher_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["teacher", "--recipe", str(RECIPE), f"data.dir={shards}", "teacher.max_new_tokens=2"])
    assert args.func(args) == 0
    assert "18 unique prompts" in capsys.readouterr().out
    empty = parser.parse_args(["teacher", "--recipe", str(RECIPE), f"data.dir={tmp_path / 'none'}"])
    with pytest.raises(SystemExit, match="no shards"):
        empty.func(empty)


def test_throughput_report(llm):
    report = teacher_throughput(llm, bench_prompts(llm, 4), batch_size=4, max_new_tokens=4)
    assert report["identical_replies"] == 4 and report["prompts"] == 4
    assert report["batched"]["replies_per_s"] > 0 and report["one_at_a_time"]["replies_per_s"] > 0


def test_teacher_share_generates_for_a_stable_subset_and_leaves_the_rest(llm, shards, counted):
    keys = [k for k, s in samples(shards).items() if s["meta"]["transcript"]]
    chosen = {k for k in keys if teacher_mod.in_share(k, 0.5)}
    assert 0 < len(chosen) < len(keys)  # the tiny corpus is split, not all-or-nothing
    assert {k for k in keys if teacher_mod.in_share(k, 0.25)} <= chosen  # a smaller share keeps a subset
    summary = generate_teacher_replies(recipe("teacher.share=0.5", "teacher.variants=[conditioned]"), shards, llm=llm)
    assert summary.skipped["outside teacher.share"] == len(keys) - len(chosen)
    assert counted["rows"] == summary.generated <= len(chosen)
    for key, s in samples(shards).items():
        if key in chosen:
            assert s["teacher"]["response"]["conditioned"]["model"] == "tiny"
        elif s["meta"]["transcript"]:  # not asked: the clip keeps what it held
            assert s["teacher"]["response"]["conditioned"]["model"] == "template"
    with pytest.raises(ValueError, match="teacher.share"):
        generate_teacher_replies(recipe("teacher.share=0"), shards, llm=llm)
