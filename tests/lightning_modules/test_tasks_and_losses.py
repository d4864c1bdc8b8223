"""Tasks: batch construction and masking, weights and schedules, task disabling, KL/CE against references, and the
start-up check that teacher and student prompts share the chat template."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from clips.examples import ExampleBuilder
from clips.tasks import build_tasks, emotion_sentence, sample_tasks
from lightning_modules.frozen_llm import IGNORE_INDEX
from lightning_modules.losses import kl_full, kl_topk
from lightning_modules.objectives import build_objectives
from lightning_modules.speech_llm import SpeechLLM, check_teacher_alignment
from paralign.recipe_loading import RecipeError, load_recipe
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg


def test_each_task_builds_its_prompt_and_target(model):
    clip = make_clip(3, 150, "angry")
    examples = {e.task: e for e in ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True)(
        clip, random.Random(0))}
    assert set(examples) == {"emotion", "asr", "response"}
    assert examples["response"].target_text == "reply 3 sad"  # the conditioned teacher reply
    assert examples["asr"].target_text == "words number 3"
    assert examples["emotion"].target_text == emotion_sentence("angry")
    prompter = model.llm.prompter
    for task, e in examples.items():
        assert e.target == prompter.reply_ids(e.target_text, model.tasks[task].max_target_tokens)
        assert e.target[-1] == prompter.eos_id  # the model must learn to stop
        parts = prompter.prompt_parts(e.template)
        assert (e.prefix, e.suffix) == (parts.prefix, parts.suffix)
        assert e.template in model.tasks[task].instructions


def test_batch_masks_everything_but_reply_tokens(model):
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 260, "happy")])
    speech, lens = model.speech_embeddings(batch.features, batch.feature_lens)
    inputs = model._spliced(batch, speech, lens, with_target=True)
    labels = inputs["labels"]
    for row, target in enumerate(batch.target):
        supervised = labels[row][labels[row] != IGNORE_INDEX].tolist()
        assert supervised == target, "only the reply tokens (and their end-of-turn) are supervised"
        n = len(batch.prefix[row]) + int(lens[row]) + len(batch.suffix[row]) + len(target)
        assert int(inputs["attention_mask"][row].sum()) == n


def test_task_without_target_is_not_sampled(model):
    clip = make_clip(0, 100)
    clip.teacher = None  # no teacher reply: the response task cannot serve this clip
    names = [e.task for e in ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True)(clip, random.Random(0))]
    assert sorted(names) == ["asr", "emotion"]
    # replies only (the showcase): the response task is asked all the same, with nothing to supervise
    builder = ExampleBuilder(model.tasks, model.llm.prompter, all_tasks=True, need_target=False)
    examples = {e.task: e for e in builder(clip, random.Random(0))}
    assert sorted(examples) == ["asr", "emotion", "response"]
    assert examples["response"].target == [] and examples["response"].target_text is None
    assert examples["asr"].target_text == "words number 0"


def test_shares_drive_sampling():
    tasks = build_tasks(tiny_cfg({"emotion": {"share": 3.0}, "asr": {"share": 1.0}, "response": {"share": 0.0}}).tasks)
    rng = random.Random(0)
    counts = Counter(sample_tasks(tasks, list(tasks), 1, rng)[0] for _ in range(4000))
    assert counts["response"] == 0
    assert 0.70 < counts["emotion"] / 4000 < 0.80


def test_schedule_start_and_ramp():
    task = build_objectives(tiny_cfg({"emotion": {"weight": 2.0, "start_step": 10, "ramp_steps": 4}}).tasks)["emotion"]
    assert [task.weight_at(s) for s in (0, 9, 10, 11, 12, 13, 100)] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def _task_losses(model, batch):
    total, logs, _, _ = model.losses(batch)
    return total, {k.split("/")[0]: v for k, v in logs.items() if k.endswith("/loss") and "/" in k}


def test_weights_and_schedules_take_effect():
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg({"emotion": {"weight": 2.0}, "asr": {"weight": 0.5, "start_step": 5},
                                "response": {"weight": 1.0}}))
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200, "happy")])
    with torch.no_grad():
        total, parts = _task_losses(model, batch)
        assert torch.allclose(total, 2.0 * parts["emotion"] + parts["response"])  # asr not started at step 0
        with pytest.MonkeyPatch.context() as mp:  # the step Lightning would report 5 steps in
            mp.setattr(type(model), "global_step", property(lambda self: 5))
            total5, parts5 = _task_losses(model, batch)
    assert torch.allclose(total5, 2.0 * parts5["emotion"] + parts5["response"] + 0.5 * parts5["asr"])


def test_disabled_task_is_neither_sampled_nor_logged(tmp_path):
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg({"emotion": {}, "asr": {"enabled": False}, "response": {}}))
    assert set(model.tasks) == {"emotion", "response"}
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200)])
    assert "asr" not in batch.task
    logged: dict[str, float] = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    model.log_dict = lambda values, **kw: logged.update(values)
    model.training_step(batch, 0)
    assert not [k for k in logged if "asr" in k]
    assert {"train/emotion/loss", "train/response/loss", "train/emotion/weight"} <= set(logged)


def test_classifier_pretrain_steps_train_the_heads_without_the_llm(monkeypatch):
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg(classifier={"enabled": True, "labels": ["emotion"], "pretrain_steps": 3}))
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200, "happy")])
    logged: dict[str, float] = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    model.log_dict = lambda values, **kw: logged.update(values)
    calls = []
    real = model.llm.label_logits
    monkeypatch.setattr(model.llm, "label_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    for step, llm_calls in ((2, 0), (3, 1)):  # steps 0-2 are the warm start; step 3 is a full step
        monkeypatch.setattr(type(model), "global_step", property(lambda self, s=step: s))
        logged.clear()
        model.zero_grad()
        model.training_step(batch, 0).backward()
        assert len(calls) == llm_calls
        assert "train/classifier/emotion/loss" in logged
        assert ("train/emotion/loss" in logged) == (step == 3)
        assert model.encoder.subsample.proj.weight.grad.abs().sum() > 0  # the encoder learns in both
    # the learning-rate schedule runs over the warm start, then afresh over the alignment steps
    model = SpeechLLM(tiny_cfg(classifier={"enabled": True, "pretrain_steps": 10},
                               optim={"lr": 1.0, "warmup_steps": 2, "scheduler": "cosine", "min_lr_ratio": 0.0},
                               trainer={"max_steps": 30}))
    schedule = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    factors = [schedule.lr_lambdas[0](step) for step in range(30)]
    assert factors[0] == factors[10] == 0.5 and factors[1] == factors[11] == 1.0  # warm-up in each phase
    assert factors[9] < 0.05 and factors[29] < 0.01 and factors[12] > 0.95  # decayed by each phase's end
    with pytest.raises(RecipeError, match="classifier.pretrain_steps"):
        load_recipe("recipes/tiny.yaml", ["classifier.pretrain_steps=5"])


def test_ce_and_kl_equal_reference_computations():
    torch.manual_seed(0)
    student = torch.randn(5, 11)
    teacher = torch.randn(5, 11)
    targets = torch.randint(0, 11, (5,))
    t = 2.0
    p = torch.softmax(teacher / t, -1)
    ref = torch.stack([sum(p[i, v] * (torch.log(p[i, v]) - torch.log_softmax(student[i] / t, -1)[v])
                           for v in range(11)) for i in range(5)]) * t * t
    assert torch.allclose(kl_full(student, teacher, t), ref, atol=1e-5)
    assert torch.allclose(kl_full(student, teacher, t), F.kl_div(
        torch.log_softmax(student / t, -1), torch.log_softmax(teacher / t, -1), log_target=True,
        reduction="none").sum(-1) * t * t, atol=1e-5)
    # top-k with k = vocabulary size is the full KL (teacher renormalised over k = all tokens)
    full_lp = torch.log_softmax(teacher, -1)
    ids = torch.arange(11).expand(5, 11)
    assert torch.allclose(kl_topk(student, ids, full_lp, t), ref, atol=1e-5)
    # top-2: KL between the teacher renormalised over its 2 tokens and the student's full-vocab log-probs there
    top = full_lp.topk(2, -1)
    q = torch.log_softmax(student / t, -1).gather(-1, top.indices)
    p2 = torch.softmax(top.values / t, -1)
    assert torch.allclose(kl_topk(student, top.indices, top.values, t), (p2 * (p2.log() - q)).sum(-1) * t * t,
                          atol=1e-5)
    ce = torch.stack([-torch.log_softmax(student[i], -1)[targets[i]] for i in range(5)])
    from lightning_modules.losses import token_ce

    assert torch.allclose(token_ce(student, targets), ce, atol=1e-6)


def test_online_kl_task_trains_against_the_frozen_llm_on_words():
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg({"response": {"loss": "ce+kl", "kl_source": "online"}}))
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200)])
    assert all(isinstance(p, list) and p for p in batch.teacher_prompt)
    total, logs, _, _ = model.losses(batch)
    assert torch.isfinite(total) and logs["response/kl"] > 0
    total.backward()
    assert all(p.grad is None for p in model.llm.parameters())


def test_online_kl_in_a_batch_that_opens_with_another_task():
    """A batch's fields are those of all its examples: a label example first must not drop the KL examples'
    teacher prompts (it did: the training run stopped at its first mixed batch)."""
    model = SpeechLLM(tiny_cfg({"emotion": {}, "response": {"loss": "ce+kl", "kl_source": "online"}}))
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200)])
    assert batch.task[0] == "emotion" and "response" in batch.task
    responses = [p for p, t in zip(batch.teacher_prompt, batch.task) if t == "response"]
    assert batch.teacher_prompt[0] is None and responses and all(responses)
    total, logs, _, _ = model.losses(batch)
    assert torch.isfinite(total) and logs["response/kl"] > 0


@pytest.mark.slow
def test_startup_check_catches_a_template_that_splits_tokens():
    """With SmolLM2's BPE, words glued to the speech slot merge into other tokens: the check must refuse."""
    from transformers import AutoTokenizer

    from clips.prompts import ChatPrompter
    from lightning_modules.llm_loading import cached_smollm2

    prompter = ChatPrompter(AutoTokenizer.from_pretrained(cached_smollm2()), "You are a helpful assistant.")
    cfg = load_recipe("recipes/demo.yaml")
    check_teacher_alignment(build_tasks(cfg.tasks), prompter)  # the shipped templates pass
    # the cue ends in ")": a "." glued after the slot merges with it into ")." in the teacher's tokens
    bad = build_tasks(tiny_cfg({"response": {"instructions": ["Reply to this:{speech}."]}}).tasks)
    with pytest.raises(ValueError, match=r"tasks\.response: teacher and student prompts do not share"):
        check_teacher_alignment(bad, prompter)
    label_only = build_tasks(tiny_cfg({"emotion": {"instructions": ["Feel:{speech}now?"]}}).tasks)
    check_teacher_alignment(label_only, prompter)  # label targets never see a teacher prompt
