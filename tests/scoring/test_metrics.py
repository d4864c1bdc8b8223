import math

import pytest

from scoring import metrics as M

PRED = ["a", "b", None, "a"]
REF = ["a", "a", "b", "a"]


def test_accuracy_counts_unmatched_as_wrong():
    assert M.accuracy(PRED, REF) == 0.5


def test_macro_f1_by_hand():
    # a: tp 2, fp 0, fn 1 -> F1 4/5; b: tp 0, fp 1, fn 1 -> 0; None is not a class.
    assert M.macro_f1(PRED, REF) == pytest.approx(0.4)


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="length"):
        M.accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="reference label is None"):
        M.macro_f1(["a"], [None])


def test_confusion_matrix_with_unmatched_column(tmp_path):
    cm = M.confusion_matrix(PRED, REF, labels=["b", "a", "c"])
    assert cm["labels"] == ["b", "a"]
    assert cm["columns"] == ["b", "a", M.UNMATCHED]
    assert cm["matrix"] == [[0, 0, 1], [1, 2, 0]]
    png = M.plot_confusion(cm, tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rouge_by_hand():
    scores = M.rouge_per_item(["the cat sat on the mat", "a b c d"], ["the cat is on the mat", "d c b a"])
    # 5 of 6 unigrams shared; LCS "the cat on the mat" = 5. Reversed order: all unigrams shared, LCS = 1 of 4.
    assert scores["rouge1"] == pytest.approx([5 / 6, 1.0])
    assert scores["rougeL"] == pytest.approx([5 / 6, 0.25])


def test_wer_is_corpus_level():
    errors = M.word_errors(["the cat sat", "hello world"], ["the cat is here", "hello world"])
    assert errors == [(2, 4), (0, 2)]
    assert M.corpus_wer(errors) == pytest.approx(2 / 6)  # not the mean of per-item rates (0.25)
    with pytest.raises(ValueError, match="empty"):
        M.word_errors(["x"], [" "])
    with pytest.raises(ValueError, match="empty"):
        M.word_errors(["x"], [" ... "])


def test_wer_counts_words_not_case_or_punctuation():
    """As speech recognition is scored: a full stop, a capital or a comma is no word error; a wrong word is."""
    assert M.word_errors(["Kids are talking by the door."], ["kids are talking by the door"]) == [(0, 6)]
    assert M.word_errors(["Well, dogs aren't sitting by the door!"], ["Dogs aren't sitting by the door"]) == [(1, 6)]
    assert M.word_errors(["Die Katze schläft."], ["die katze schläft"]) == [(0, 3)]
    assert M.normalise_words("  'Quoted' words -- and   don't.  ") == "quoted words and don't"


def test_semantic_similarity_uses_embedder(bow_embedder):
    sims = M.semantic_similarity(["red apple", "red apple"], ["red apple", "blue sky"], bow_embedder)
    assert sims[0] == pytest.approx(1.0)
    assert sims[1] < 0.5


def test_bootstrap_ci_contains_point_and_is_deterministic():
    values = [((i * 37) % 101) / 100 for i in range(50)]
    ci = M.bootstrap_ci(values, n=500, seed=3)
    assert ci["value"] == pytest.approx(sum(values) / 50)
    assert ci["low"] < ci["value"] < ci["high"]
    assert ci["n"] == 50
    assert M.bootstrap_ci(values, n=500, seed=3) == ci
    assert M.bootstrap_ci(values, n=500, seed=4) != ci
    # A constant metric has a zero-width interval.
    assert M.bootstrap_ci([2.0] * 5, n=100) == {"value": 2.0, "low": 2.0, "high": 2.0, "n": 5}


def test_bootstrap_ci_over_pairs():
    pairs = list(zip(PRED * 10, REF * 10))
    ci = M.bootstrap_ci(pairs, M.pairwise(M.accuracy), n=300, seed=0)
    assert ci["value"] == 0.5
    assert ci["low"] < 0.5 < ci["high"]
    errors = M.word_errors(["a b", "a c"] * 5, ["a b", "a b"] * 5)
    wer = M.bootstrap_ci(errors, M.corpus_wer, n=300)
    assert wer["value"] == pytest.approx(0.25)
    assert wer["low"] <= 0.25 <= wer["high"]
    with pytest.raises(ValueError, match="at least one"):
        M.bootstrap_ci([])


def test_group_means():
    out = M.group_means([1, 0, 1, 1], ["sad", "sad", None, "happy"])
    assert out == {"happy": {"value": 1.0, "n": 1}, "sad": {"value": 0.5, "n": 2}}
    assert not math.isnan(out["sad"]["value"])
