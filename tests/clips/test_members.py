"""What a clip carries beside its audio (clips/members.py, clips/clip.py): one type per member, shared by the writer
and the readers; a member of the wrong shape is a counted skip in the stream, never a silently empty target."""
from __future__ import annotations

import io
import json
import random
import tarfile

import pytest
import soundfile as sf

from clips.clip import Clip, read_members
from clips.examples import ExampleBuilder
from clips.members import QAPair, TeacherReplies, TeacherReply, Variant
from clips.tasks import build_tasks
from datamodules.datamodule import ShardDataModule
from tests.lightning_modules.conftest import tiny_cfg


def test_teacher_replies_round_trip_and_unknown_variants_are_left_out():
    cued = TeacherReply("Oh no.", {"ids": [[1]], "logprobs": [[0.0]]}, "p", "m", {"t": 1})
    replies = TeacherReplies({"response": {Variant.CONDITIONED: cued, Variant.PLAIN: TeacherReply("Okay.")}})
    data = json.loads(json.dumps(replies.to_json()))
    assert data["response"]["plain"] == {"reply": "Okay."}  # no empty fields written
    assert TeacherReplies.from_json(data) == replies
    data["response"]["a-newer-variant"] = {"reply": "?"}
    assert TeacherReplies.from_json(data) == replies
    replies.put("response", Variant.PLAIN, None)  # an empty reply removes a stale one
    assert replies.get("response", Variant.PLAIN) is None and replies.get("emotion", Variant.PLAIN) is None


@pytest.mark.parametrize("member, message", [
    ([], "expected an object of tasks"), ({"response": "hi"}, "task 'response'"),
    ({"response": {"conditioned": {"text": "hi"}}}, "response.conditioned has no reply text"),
])
def test_a_teacher_member_of_the_wrong_shape_names_what_is_wrong(member, message):
    with pytest.raises(ValueError, match=message):
        TeacherReplies.from_json(member)


def test_read_members_types_every_member_and_fills_absent_labels():
    members = {"json": b'{"transcript": "Hi."}', "qa.json": b'[{"question": "Q?", "answer": "A.", "type": "x"}]',
               "asr.json": b'{"text": "hi", "model": "whisper-base"}',
               "teacher.json": b'{"response": {"plain": {"reply": "Hello."}}}'}
    meta, teacher, qa, heard = read_members("k1", members)
    assert meta["id"] == "k1" and meta["emotion"] is None and meta["style"] == []  # absent, never guessed
    assert teacher.get("response", Variant.PLAIN).reply == "Hello." and qa == [QAPair("Q?", "A.", "x")]
    assert heard == "hi"
    for name, bad in (("asr.json", b'{"words": "hi"}'), ("qa.json", b'{"question": "Q?"}'), ("json", b"[1]")):
        with pytest.raises(ValueError):
            read_members("k1", {**members, name: bad})


def _tar(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _flac(seconds: float) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(np.arange(int(16000 * seconds)) / 5), 16000, format="FLAC")
    return buf.getvalue()


def test_the_stream_counts_a_malformed_teacher_member_and_types_the_rest(tmp_path):
    meta = json.dumps({"transcript": "It rained.", "emotion": "sad"}).encode()
    _tar(tmp_path / "train-000000.tar", [
        ("good", {"flac": _flac(1.0), "json": meta, "teacher.json": b'{"response": {"plain": {"reply": "Oh."}}}'}),
        ("bad", {"flac": _flac(1.0), "json": meta, "teacher.json": b'{"response": {"plain": {"reply": 3}}}'}),
    ])
    seen = []

    def builder(clip: Clip, rng: random.Random) -> list[Clip]:
        seen.append(clip)
        return [clip]
    dm = ShardDataModule(train=str(tmp_path), num_workers=0, example_builder=builder)
    (batch,) = list(dm.train_dataloader())
    assert batch["keys"] == ["good"] and dm.skip_counts() == {"bad_json": 1}
    assert isinstance(seen[0].teacher, TeacherReplies) and seen[0].teacher.get("response", "plain").reply == "Oh."


def test_a_training_batch_holds_its_declared_fields_and_no_waveform(tmp_path):
    from lightning_modules.speech_llm import SpeechLLM
    from prep.tiny_corpus import build_tiny_corpus

    build_tiny_corpus(tmp_path, clips=8)
    model = SpeechLLM(tiny_cfg({"response": {}, "emotion": {}}))
    dm = ShardDataModule.from_recipe(model.cfg, model.tasks, model.llm.prompter, train=str(tmp_path))
    dm.trainer = None
    batch = dm.on_before_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert type(batch).__name__ == "Batch" and batch.position is None  # the loader's tag is taken off
    assert not {"audio", "wave", "waveform", "sample_rate", "teacher", "qa"} & set(vars(batch))
    assert len(batch) == batch.features.shape[0] == len(batch.task)
    assert batch.num_frames == int(batch.feature_lens.sum())


def test_examples_depend_on_the_clip_and_the_seed_only_and_carry_the_clips_features():
    tasks = build_tasks(tiny_cfg({"emotion": {}, "asr": {}}).tasks)
    from lightning_modules.speech_llm import SpeechLLM
    from tests.lightning_modules.conftest import make_clip

    prompter = SpeechLLM(tiny_cfg({"emotion": {}, "asr": {}})).llm.prompter
    builder = ExampleBuilder(tasks, prompter, all_tasks=True)
    first, again = (builder(make_clip(0, 50), random.Random(3)) for _ in range(2))
    assert [(e.task, e.prefix, e.suffix, e.target) for e in first] == [(e.task, e.prefix, e.suffix, e.target)
                                                                       for e in again]
    assert {e.task for e in first} == {"emotion", "asr"} and all(e.features is not None for e in first)
