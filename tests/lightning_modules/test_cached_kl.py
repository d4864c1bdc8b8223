"""The cached top-k KL inside ``SpeechLLM.losses`` on a mixed-task batch equals the plain reference over the
selected positions (some rows with fewer cached positions than target tokens), with gradients to the encoder."""
from __future__ import annotations

import dataclasses

import torch

from clips.members import Variant
from lightning_modules.losses import kl_topk
from lightning_modules.speech_llm import SpeechLLM
from tests.lightning_modules.conftest import batch_for, make_clip, tiny_cfg


def test_cached_topk_kl_matches_reference_on_a_mixed_batch():
    torch.manual_seed(0)
    model = SpeechLLM(tiny_cfg({"response": {"loss": "ce+kl", "kl_source": "cached", "kl_temperature": 2.0},
                                "emotion": {}}))
    vocab = model.llm.model.get_output_embeddings().weight.shape[0]
    clips = [make_clip(i, 100 + 40 * i) for i in range(3)]
    g = torch.Generator().manual_seed(1)
    for n, clip in zip((30, 2, 0), clips):  # enough, fewer than the reply's tokens, none at all
        lp = torch.randn(n, 4, generator=g).log_softmax(-1).tolist()
        ids = torch.randint(0, vocab, (n, 4), generator=g).tolist()
        reply = clip.teacher.get("response", Variant.CONDITIONED)
        clip.teacher.put("response", Variant.CONDITIONED, dataclasses.replace(reply, topk={"ids": ids, "logprobs": lp}))
    batch = batch_for(model, clips)
    assert sorted(batch.task) == ["emotion"] * 3 + ["response"] * 3
    _, logs, _, _ = model.losses(batch)

    with torch.no_grad():  # the reference: copy out the response rows' positions, keep the cached ones
        speech, lens = model.speech_embeddings(batch.features, batch.feature_lens)
        inputs = model._spliced(batch, speech, lens, with_target=True)
        logits, _, rows = model.llm.label_logits(inputs["inputs_embeds"], inputs["attention_mask"],
                                                 inputs["position_ids"], inputs["labels"])
        ids, lps, chosen = [], [], []
        for pos, row in enumerate(rows.tolist()):
            if batch.task[row] != "response":
                continue
            j = int((rows[:pos] == row).sum())  # the position's index within its reply
            topk = batch.topk[row]
            if j < len(topk["ids"]):
                ids.append(topk["ids"][j])
                lps.append(topk["logprobs"][j])
                chosen.append(pos)
        ref = kl_topk(logits[chosen], torch.tensor(ids), torch.tensor(lps), 2.0).mean()
    assert len(chosen) > 2 and torch.allclose(logs["response/kl"], ref, atol=1e-5)

    model.zero_grad()
    total, _, _, _ = model.losses(batch)
    total.backward()
    assert all(p.grad is None for p in model.llm.parameters())
    assert model.encoder.subsample.proj.weight.grad.abs().sum() > 0
