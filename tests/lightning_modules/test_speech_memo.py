"""Speech tokens remembered per clip during an evaluation: the same tokens as made afresh, made once per clip
whatever batch it comes in, and never while gradients are on (training)."""
from __future__ import annotations

import torch

from tests.lightning_modules.conftest import batch_for, make_clip


def test_each_clip_is_encoded_once_and_its_tokens_are_the_ones_made_afresh(model):
    model.eval()
    calls = []
    encode = model.encoder.forward
    model.encoder.forward = lambda feats, lens: calls.append(len(lens)) or encode(feats, lens)
    clips = [make_clip(i, frames) for i, frames in enumerate((90, 140, 60))]
    batch = batch_for(model, clips)  # three tasks per clip: every clip three times in the batch
    with torch.no_grad():
        fresh, fresh_lens = model.speech_embeddings(batch.features, batch.feature_lens)
        calls.clear()
        with model.remembering_speech() as memo:
            speech, lens = model.speech_embeddings(batch.features, batch.feature_lens)
            # the same clips again, another batch: one clip alone, padded to its own length
            alone, alone_lens = model.speech_embeddings(batch.features[1:2, :int(batch.feature_lens[1])],
                                                        batch.feature_lens[1:2])
        after, _ = model.speech_embeddings(batch.features[:1, :int(batch.feature_lens[0])], batch.feature_lens[:1])
    assert calls == [3, 1]  # the three distinct clips once; after the block, made afresh again
    assert memo.made == 3 and memo.reused == len(batch) - 3 + 1
    assert torch.equal(lens, fresh_lens) and int(alone_lens[0]) == int(fresh_lens[1])
    for i, n in enumerate(fresh_lens.tolist()):
        assert torch.allclose(speech[i, :n], fresh[i, :n], atol=1e-5)
    assert torch.allclose(alone[0], fresh[1, :int(fresh_lens[1])], atol=1e-5)
    assert model._speech_memo is None


def test_training_never_reads_remembered_tokens(model):
    batch = batch_for(model, [make_clip(0, 80)])
    with model.remembering_speech() as memo:
        speech, _ = model.speech_embeddings(batch.features, batch.feature_lens)  # gradients on
    assert memo.made == 0 and speech.requires_grad
