"""The frozen LLM stays frozen, speech lands exactly at the placeholder, the loss is CE on reply tokens only."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_modules.frozen_llm import IGNORE_INDEX
from tests.lightning_modules.conftest import batch_for, make_clip


def test_frozen_llm_bit_identical_after_training_steps(model):
    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200, "happy")])
    before = {k: v.clone() for k, v in model.llm.state_dict().items()}
    trainable_before = [p.detach().clone() for p in model.trainable_parameters()]
    opt = model.configure_optimizers()["optimizer"]
    model.train()
    for _ in range(4):
        loss, _, _, _ = model.losses(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not model.llm.training and not model.llm.model.training, "the LLM must stay in eval mode"
    for name, value in model.llm.state_dict().items():
        assert torch.equal(before[name], value), name
    assert all(p.grad is None and not p.requires_grad for p in model.llm.parameters())
    optimized = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in model.llm.parameters()}, "an LLM parameter is in the optimizer"
    assert all(not torch.equal(a, b) for a, b in zip(trainable_before, model.trainable_parameters()))


def test_splice_places_speech_at_placeholder_and_masks_labels(model):
    llm = model.llm
    hidden = llm.hidden_size
    prefix = [[1, 2, 3], [4, 5]]
    suffix = [[6], [7, 8, 9]]
    target = [[10, 11], [12]]
    speech = torch.randn(2, 4, hidden)
    lens = torch.tensor([4, 2])
    out = llm.splice(prefix, speech, lens, suffix, target)
    emb = llm.model.get_input_embeddings()
    # row 0: 3 prefix + 4 speech + 1 suffix + 2 target = 10; row 1: 2 + 2 + 3 + 1 = 8 (right padded to 10)
    assert out["attention_mask"].tolist() == [[1] * 10, [1] * 8 + [0, 0]]
    assert torch.equal(out["inputs_embeds"][0, 3:7], speech[0])
    assert torch.equal(out["inputs_embeds"][1, 2:4], speech[1, :2])
    assert torch.equal(out["inputs_embeds"][0, :3], emb(torch.tensor([1, 2, 3])))
    assert torch.equal(out["inputs_embeds"][1, 4:7], emb(torch.tensor([7, 8, 9])))
    assert out["labels"].tolist() == [[IGNORE_INDEX] * 8 + [10, 11],
                                      [IGNORE_INDEX] * 7 + [12, IGNORE_INDEX, IGNORE_INDEX]]
    left = llm.splice(prefix, speech, lens, suffix, None, left_pad=True)
    # left padding: row 1 (2 + 2 + 3 = 7 tokens) sits at the right end of width 8
    assert left["attention_mask"][1].tolist() == [0] + [1] * 7
    assert torch.equal(left["inputs_embeds"][1, 3:5], speech[1, :2])
    assert left["position_ids"][1].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]


def test_loss_equals_hand_computed_reference(model):
    llm = model.llm
    speech = torch.randn(1, 3, llm.hidden_size)
    out = llm.splice([[1, 2]], speech, torch.tensor([3]), [[3]], [[4, 5]])
    logits, targets, rows = llm.label_logits(out["inputs_embeds"], out["attention_mask"], out["position_ids"],
                                             out["labels"])
    # Reference: the full causal LM over the same embeddings; reply tokens 4, 5 sit at positions 6, 7 and are
    # predicted from positions 5, 6.
    full = llm.model(inputs_embeds=out["inputs_embeds"], attention_mask=out["attention_mask"]).logits[0]
    expected = F.cross_entropy(full[[5, 6]], torch.tensor([4, 5]))
    assert targets.tolist() == [4, 5] and rows.tolist() == [0, 0]
    assert torch.allclose(F.cross_entropy(logits, targets), expected, atol=1e-5)


def test_the_shared_opening_once_gives_the_loss_and_gradients_of_every_row_in_full(model):
    import lightning_modules.frozen_llm as frozen_llm

    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200, "happy"), make_clip(2, 90, "angry")])
    speech, lens = model.speech_embeddings(batch.features, batch.feature_lens)
    speech = speech.detach().requires_grad_(True)
    inputs = model._spliced(batch, speech, lens, with_target=True)
    args = (inputs["inputs_embeds"], inputs["attention_mask"], inputs["position_ids"], inputs["labels"])
    shared = frozen_llm.shared_opening(*args[:2], inputs["labels"])
    # the system turn and the user header: every row's, before the first speech token
    assert frozen_llm.MIN_SHARED <= shared < min(len(p) for p in batch.prefix) + 1
    logits, targets, rows = model.llm.label_logits(*args)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, targets), speech, retain_graph=True)
    model.llm.share_opening = False  # every row in full
    full_logits, full_targets, full_rows = model.llm.label_logits(*args)
    (full_grad,) = torch.autograd.grad(F.cross_entropy(full_logits, full_targets), speech)
    assert torch.equal(targets, full_targets) and torch.equal(rows, full_rows)
    torch.testing.assert_close(logits, full_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grad, full_grad, atol=1e-6, rtol=1e-3)


def test_kv_caches_go_by_the_name_this_transformers_takes(model, recwarn, capfd):
    """The shared opening's cache and the closed-set continuations' run without transformers' deprecation notice for
    ``past_key_values`` (renamed ``cache``; the old name goes in 5.40)."""
    from lightning_modules.frozen_llm import continuation_logprobs

    batch = batch_for(model, [make_clip(0, 120), make_clip(1, 200, "happy")])
    speech, lens = model.speech_embeddings(batch.features, batch.feature_lens)
    inputs = model._spliced(batch, speech, lens, with_target=True)
    model.llm.label_logits(inputs["inputs_embeds"], inputs["attention_mask"], inputs["position_ids"], inputs["labels"])
    embeds = model.llm.embed(torch.tensor([[5, 6, 7], [8, 9, 10]]))
    scores = continuation_logprobs(model.llm.model, embeds, torch.ones(2, 3, dtype=torch.long), [[3, 4], [3, 5, 6]], 0)
    assert scores.shape == (2, 2) and torch.isfinite(scores).all()
    notices = [str(w.message) for w in recwarn] + [capfd.readouterr().err]
    assert not any("past_key_values" in n for n in notices), notices


def test_spliced_generation_matches_text_generation(model):
    """Speech embeddings equal to token embeddings must generate exactly what the tokens generate."""
    llm = model.llm
    prompter = llm.prompter
    parts = prompter.prompt_parts("{speech}\nHow is the speaker feeling?")
    words = [prompter.encode("hello"), prompter.encode("a longer sentence here")]
    emb = llm.model.get_input_embeddings()
    speech = torch.zeros(2, max(map(len, words)), llm.hidden_size)
    for i, w in enumerate(words):
        speech[i, :len(w)] = emb(torch.tensor(w))
    spliced = llm.splice([parts.prefix] * 2, speech, torch.tensor([len(w) for w in words]), [parts.suffix] * 2,
                         None, left_pad=True)
    batched = llm.generate(spliced["inputs_embeds"], spliced["attention_mask"], max_new_tokens=6)
    for i, w in enumerate(words):
        ids = torch.tensor([parts.prefix + w + parts.suffix])
        alone = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                                   eos_token_id=llm.eos_id, pad_token_id=llm.pad_id)
        assert batched[i] == prompter.tokenizer.decode(alone[0, ids.shape[1]:], skip_special_tokens=True)
