"""The reference for cross-corpus emotion: a linear probe on each layer of the frozen Whisper encoder, fitted on one
corpus and scored on another (``paralign probe-layers``).

It tells how much of the emotion the frozen features carry across recordings, speakers and languages, before any
training: where the model's own answers stand against it says whether the gap is in the features or in what
training made of them. Each clip is mean-pooled per hidden state (the conv stem's output, then each layer's) over
its real length (``layer_norm``: each frame layer-normed first, as the model's layer mix takes them). Four
normalisations of the pooled features are compared, as cross-corpus work does: statistics of the fitting corpus for
both (none), each corpus standardised by its own statistics (corpus), each speaker standardised by their own clips
(speaker; a speaker with one clip is left as the corpus is), and each speaker's mean removed, their spread kept
(speaker mean: what ``encoder.speaker_norm`` does in the model).
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from clips.audio import WavePrep, load_audio
from clips.vocab import EMOTIONS
from scoring.probe import fit_probe_accuracy

log = logging.getLogger(__name__)
NORMALISATIONS = ("none", "corpus", "speaker", "speaker mean")


def corpus_clips(entry: str) -> tuple[str, list[dict[str, Any]]]:
    """``<importer>=<folder>``: (name, records with an audio path, emotion and speaker) of a corpus as released."""
    from paralign.evaluation.cross_corpus import parse_entries  # the syntax of eval.cross_corpus, read once
    from prep.importers import IMPORTERS, import_corpus

    (corpus,) = parse_entries([entry])
    if corpus.importer not in IMPORTERS:
        raise ValueError(f"{entry!r}: write <importer>=<folder>, the importer one of {', '.join(sorted(IMPORTERS))}")
    records = [r for r in import_corpus(corpus.importer, corpus.folder)
               if r.get("emotion") in EMOTIONS and r.get("audio_path")]
    if not records:
        raise ValueError(f"{entry}: no clip with an emotion label")
    return corpus.name, records


@torch.no_grad()
def pooled_states(transcriber: Any, records: list[dict[str, Any]], desc: str,
                  prep: WavePrep | None = None, layer_norm: bool = False) -> np.ndarray:
    """``[clips, hidden states, d_model]``: each clip's mean over its frames of every hidden state of Whisper
    (``prep``: each wave trimmed and levelled first, as ``data.trim_silence_db`` and ``data.level_dbfs`` do;
    ``layer_norm``: each frame layer-normed before the mean)."""
    rate = transcriber.extractor.sampling_rate
    out = []
    for record in tqdm(records, desc=desc, unit="clip"):
        wave, _ = load_audio(record["audio_path"], rate)
        if prep is not None:
            wave = prep(wave, rate)
        feats = transcriber.features(wave)[None]
        states, lens = transcriber.encoder.hidden_states(feats, torch.tensor([feats.shape[1]]))
        n = int(lens[0])
        if layer_norm:
            states = [torch.nn.functional.layer_norm(s, s.shape[-1:]) for s in states]
        out.append(torch.stack([s[0, :n].mean(0) for s in states]).float().numpy())
    return np.stack(out)


def normalised(x: np.ndarray, speakers: list[str], how: str, stats: tuple[np.ndarray, np.ndarray] | None = None
               ) -> np.ndarray:
    """``x`` [clips, features] standardised as ``how`` says (``stats``: (mean, std) to use for "none")."""
    if how == "none":
        mean, std = stats if stats is not None else (x.mean(0), x.std(0))
        return (x - mean) / np.maximum(std, 1e-6)
    if how == "corpus":
        return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    out = normalised(x, speakers, "corpus")
    for speaker, count in Counter(speakers).items():
        rows = [i for i, s in enumerate(speakers) if s == speaker]
        if count > 1 and how == "speaker":
            out[rows] = (x[rows] - x[rows].mean(0)) / np.maximum(x[rows].std(0), 1e-6)
        elif count > 1:  # speaker mean (the probe standardises by the fitting set afterwards)
            out[rows] = x[rows] - x[rows].mean(0)
    return out


def layer_probe(fit: tuple[np.ndarray, list[dict]], score: tuple[np.ndarray, list[dict]]) -> dict[str, Any]:
    """Probe accuracy on ``score`` per hidden state and normalisation, fitted on ``fit``, on the emotions both have."""
    shared = sorted({r["emotion"] for r in fit[1]} & {r["emotion"] for r in score[1]})
    if len(shared) < 2:
        raise ValueError(f"the two corpora share fewer than two emotions ({shared})")
    index = {e: i for i, e in enumerate(shared)}

    def keep(x: np.ndarray, records: list[dict]) -> tuple[np.ndarray, list[dict]]:
        rows = [i for i, r in enumerate(records) if r["emotion"] in index]
        return x[rows], [records[i] for i in rows]

    (x_fit, r_fit), (x_score, r_score) = keep(*fit), keep(*score)
    y_fit = torch.tensor([index[r["emotion"]] for r in r_fit])
    y_score = torch.tensor([index[r["emotion"]] for r in r_score])
    s_fit, s_score = [str(r.get("speaker")) for r in r_fit], [str(r.get("speaker")) for r in r_score]
    table: dict[str, list[float]] = {}
    for how in NORMALISATIONS:
        table[how] = []
        for layer in range(x_fit.shape[1]):
            a, b = x_fit[:, layer], x_score[:, layer]
            stats = (a.mean(0), a.std(0))
            accuracy = fit_probe_accuracy(torch.from_numpy(normalised(a, s_fit, how, stats)).float(), y_fit,
                                          torch.from_numpy(normalised(b, s_score, how, stats)).float(), y_score,
                                          len(shared))
            table[how].append(round(accuracy, 4))
    counts = Counter(r["emotion"] for r in r_score)
    return {"emotions": shared, "n_fit": len(r_fit), "n_score": len(r_score), "chance": round(1 / len(shared), 4),
            "majority": round(max(counts.values()) / len(r_score), 4), "accuracy": table}


def format_layer_probe(report: dict[str, Any]) -> str:
    lines = [f"linear probe on frozen {report['encoder']}: fitted on {report['fit']} ({report['n_fit']} clips), "
             f"scored on {report['score']} ({report['n_score']} clips); {len(report['emotions'])} shared emotions "
             f"({', '.join(report['emotions'])}), chance {report['chance']:.2f}, majority class "
             f"{report['majority']:.2f}",
             "  normalisation  " + "  ".join(f"{'state ' + str(i):>8}" for i in range(len(report['accuracy']['none'])))]
    for how, row in report["accuracy"].items():
        lines.append(f"  {how:<13}  " + "  ".join(f"{a:>8.3f}" for a in row))
    return "\n".join(lines)
