"""The conformer encoder's input normalisation: global (loudness survives), and blind to what padding holds."""
from __future__ import annotations

import math

import torch

from lightning_modules.encoders import ConformerEncoder


def _encoder() -> ConformerEncoder:
    torch.manual_seed(0)
    return ConformerEncoder(n_mels=80, d_model=32, layers=1, heads=2, ffn_dim=64, kernel_size=7, dropout=0.0,
                            feature_mean=-7.0, feature_std=4.0).eval()


def test_padding_content_does_not_reach_the_output():
    enc = _encoder()
    feats = torch.randn(2, 160, 80) * 4 - 7
    lens = torch.tensor([100, 160])
    feats[0, 100:] = 0.0  # what the collate pads with
    other = feats.clone()
    other[0, 100:] = 99.0  # anything else
    with torch.no_grad():
        a, la = enc(feats, lens)
        b, lb = enc(other, lens)
    assert torch.equal(la, lb)
    n = int(la[0])  # the valid output frames of the padded clip
    assert torch.allclose(a[0, :n], b[0, :n], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)


def test_a_louder_clip_encodes_differently():
    """Per-utterance normalisation would map a clip and the same clip 10 dB louder to the same output."""
    enc = _encoder()
    feats = torch.randn(1, 120, 80) * 4 - 7
    lens = torch.tensor([120])
    louder = feats + math.log(10.0)  # +10 dB in power: log-mel rises by ln 10 in every bin
    with torch.no_grad():
        quiet, _ = enc(feats, lens)
        loud, _ = enc(louder, lens)
    assert (quiet - loud).abs().mean() > 0.05 * quiet.abs().mean()
