import math

import pytest

from paralign.evaluation.judge_validation import best_threshold, validate_judge


def test_point_biserial_and_spearman_by_hand():
    scores = [10, 20, 30, 40]
    correct = [False, False, True, True]
    # r_pb = (M1 - M0) / s_n * sqrt(p q) = (35 - 15) / sqrt(125) * 0.5
    expected = 20 / math.sqrt(125) * 0.5
    out = validate_judge(scores, correct)
    assert out["point_biserial"] == pytest.approx(expected)
    assert out["spearman"] == pytest.approx(expected)  # ranks 1..4 vs tied ranks 1.5, 1.5, 3.5, 3.5
    assert (out["threshold"], out["accuracy_at_threshold"]) == (30.0, 1.0)
    assert out["n"] == 4 and out["n_unparsed"] == 0


def test_unparsed_scores_are_left_out_and_counted():
    out = validate_judge([90, None, 10, 80, None], [True, True, False, True, False])
    assert out["n"] == 3 and out["n_unparsed"] == 2
    assert out["point_biserial"] > 0.9


def test_disagreeing_judge_shows_negative_correlation():
    out = validate_judge([90, 80, 20, 10], [False, False, True, True])
    assert out["point_biserial"] < -0.9


def test_best_threshold_may_be_all_wrong():
    assert best_threshold([50, 60], [False, False]) == (61.0, 1.0)
    assert best_threshold([10, 90, 50], [True, True, False]) == (10.0, 2 / 3)


def test_degenerate_inputs_have_a_note():
    out = validate_judge([50, 50, 50], [True, False, True])
    assert out["point_biserial"] is None and "undefined" in out["note"]
    assert validate_judge([None], [True])["note"] == "no parsed judge scores"
    with pytest.raises(ValueError, match="length"):
        validate_judge([1], [True, False])
