"""The CTC loss from speech tokens to the transcript's LLM token ids (lightning_modules/token_ctc.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.speech_llm import SpeechLLM
from lightning_modules.token_ctc import TokenCTC
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg


def _table(vocab: int = 50, dim: int = 16) -> nn.Embedding:
    torch.manual_seed(0)
    return nn.Embedding(vocab, dim).requires_grad_(False)


def test_speech_that_is_the_words_embeddings_decodes_to_them_and_scores_low():
    table = _table()
    ctc = TokenCTC(16, lambda: table.weight)
    words = [7, 3, 3, 12]  # a repeat needs a blank between its copies
    blank = ctc.blank.detach()
    frames = [table.weight[7], blank, table.weight[3], blank, table.weight[3], table.weight[12], table.weight[12]]
    speech = torch.stack(frames)[None]
    lens = torch.tensor([len(frames)])
    assert ctc.greedy(speech, lens) == [words]
    noise = torch.randn_like(speech)
    assert ctc(speech, lens, [words]) < ctc(noise, lens, [words])


@pytest.mark.parametrize("vocab, negatives", [(50, 2048), (5000, 64)])  # the whole table; a sampled softmax
def test_training_speech_tokens_on_it_makes_them_spell_the_transcript(vocab, negatives):
    table = _table(vocab)
    ctc = TokenCTC(16, lambda: table.weight, negatives=negatives)
    speech = nn.Parameter(torch.randn(2, 12, 16))
    lens = torch.tensor([12, 9])
    targets = [[5, 9, 1], [30, 2]]
    opt = torch.optim.Adam([speech, *ctc.parameters()], lr=0.05)
    first = ctc(speech, lens, targets).item()
    for _ in range(150):
        opt.zero_grad()
        ctc(speech, lens, targets).backward()
        opt.step()
    assert ctc(speech, lens, targets).item() < 0.1 * first
    assert ctc.greedy(speech, lens) == targets
    assert table.weight.grad is None  # the LLM's table never trains


def test_examples_without_a_transcript_are_left_out():
    table = _table()
    ctc = TokenCTC(16, lambda: table.weight)
    assert ctc(torch.randn(2, 5, 16), torch.tensor([5, 5]), [[], []]) is None
    too_long = ctc(torch.randn(2, 5, 16), torch.tensor([5, 2]), [[1, 2], [1, 2, 3]])  # 3 tokens in 2 frames
    assert too_long is not None and torch.isfinite(too_long)


def test_in_the_model_it_trains_in_the_warm_start_and_checkpoints_without_the_table():
    model = SpeechLLM(tiny_cfg(ctc={"enabled": True, "weight": 0.5}, classifier={"enabled": True}))
    batch = batch_for(model, [make_clip(i, 120) for i in range(3)])
    total, logs, _, _ = model.losses(batch, with_llm=False)  # the warm start: no LLM pass, ctc included
    assert "ctc/loss" in logs and float(logs["ctc/loss"]) > 0
    total.backward()
    assert model.ctc.blank.grad is not None and model.llm.model.get_input_embeddings().weight.grad is None
    saved = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(saved)
    assert {"ctc.blank", "ctc.scale"} <= set(saved["state_dict"])
    assert not any(k.startswith("llm.") for k in saved["state_dict"])
    assert "ctc/loss" not in SpeechLLM(tiny_cfg()).losses(batch, with_llm=False)[1]  # off by default
