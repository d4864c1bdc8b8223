import json
import re

import pytest

from paralign.evaluation.judge import RUBRIC, Judge
from paralign.evaluation.report import METRIC_HELP, compute_metrics, write_report


class KeywordJudge(Judge):
    """Scores 90 when the reply names the speaker's emotion, 20 otherwise; never answers about 'that is nice'."""

    judge_id = "fake:keyword"

    def complete(self, prompt):
        emotion = re.search(r"emotional state: (\w+)", prompt).group(1)
        reply = re.search(r"reply to rate: (.*)", prompt).group(1)
        if "that is nice" in reply:
            return "I would rather not say."
        return "Score: 90" if emotion in reply else "Score: 20"


@pytest.fixture
def scored(generations, bow_embedder):
    extra = [
        {"id": "clip900", "task": "emotion", "reply": "happy", "emotion": None, "style": []},
        {"id": "clip901", "task": "dance", "reply": "x"},
        {"id": "clip902", "task": "response", "reply": "x", "reference": " "},
    ]
    gens = generations + extra
    return gens, compute_metrics(gens, embedder=bow_embedder, judge=KeywordJudge(retries=1), n_boot=200)


def test_compute_metrics_values(scored):
    _, m = scored
    tasks = m["tasks"]
    assert set(tasks) == {"response", "emotion", "style", "asr"}
    assert tasks["emotion"]["metrics"]["accuracy"]["value"] == 0.5
    assert tasks["emotion"]["per_emotion"]["accuracy"]["happy"] == {"value": 1.0, "n": 2}
    assert tasks["emotion"]["per_emotion"]["accuracy"]["sad"] == {"value": 0.0, "n": 2}
    assert sum(map(sum, tasks["emotion"]["confusion"]["matrix"])) == 8
    # style: "quickly" names the odd clips' only style, "loudly" one of the even clips' two styles
    assert tasks["style"]["metrics"]["accuracy"]["value"] == 1.0
    assert tasks["asr"]["metrics"]["wer"]["value"] == pytest.approx(8 / 48)
    response = tasks["response"]["metrics"]
    assert response["rouge1"]["value"] == pytest.approx(0.5)
    assert response["semantic_similarity"]["value"] == pytest.approx(0.5, abs=0.05)
    # unparsed judge answers are left out of the mean, not scored 0
    assert response["judge"]["value"] == 90.0 and response["judge"]["n"] == 4
    assert tasks["response"]["judge"]["n_unparsed"] == 4
    for est in response.values():
        assert est["low"] <= est["value"] <= est["high"]


def test_judge_validated_on_emotion_answers(scored):
    _, m = scored
    assert m["judge"]["id"] == "fake:keyword" and m["judge"]["rubric"] == RUBRIC
    v = m["judge"]["validation"]
    assert v["n"] == 8 and v["point_biserial"] == pytest.approx(1.0)
    assert v["accuracy_at_threshold"] == 1.0


def test_skips_are_counted_and_fingerprint_is_order_free(scored, generations, bow_embedder):
    gens, m = scored
    assert m["skipped"] == {"emotion: no emotion label": 1, "dance: unknown task": 1, "response: no reference reply": 1}
    assert m["test_set"]["n_clips"] == 11
    again = compute_metrics(list(reversed(gens)), embedder=bow_embedder, n_boot=10)
    assert again["test_set"]["fingerprint"] == m["test_set"]["fingerprint"]
    assert again["judge"] is None
    other = compute_metrics(generations[:-4], embedder=bow_embedder, n_boot=10)
    assert other["test_set"]["fingerprint"] != m["test_set"]["fingerprint"]


def test_records_without_reply_are_refused(bow_embedder):
    with pytest.raises(ValueError, match="record 0 lacks reply"):
        compute_metrics([{"id": "a", "task": "asr"}], embedder=bow_embedder)


def test_write_report_end_to_end(scored, tmp_path):
    gens, m = scored
    report = write_report(tmp_path / "eval", m, gens, title="Tiny run")
    eval_dir = tmp_path / "eval"
    assert json.loads((eval_dir / "metrics.json").read_text()) == m
    assert (eval_dir / "confusion_emotion.png").read_bytes()[:4] == b"\x89PNG"
    assert (eval_dir / "confusion_style.png").is_file()
    text = report.read_text()
    assert text.startswith("# Tiny run")
    assert RUBRIC in text and "### Judge validation" in text
    assert "![confusion matrix of the emotion task](confusion_emotion.png)" in text
    for name in ("accuracy", "macro_f1", "rouge1", "rougeL", "semantic_similarity", "wer", "judge"):
        assert f"- **{name}**: {METRIC_HELP[name]}" in text
    assert "| accuracy | 0.500 [" in text
    assert "| wer (lower is better) | 0.167 [" in text
    assert "| judge | 90.0 [90.0, 90.0] | 4 |" in text
    assert "Judge validation on 8 emotion answers: point-biserial r = 1.000" in text
    assert "| happy | 1.000 (2) |" in text  # per-emotion accuracy row
    assert "dance: unknown task: 1" in text


def test_closed_set_answers_are_scored_and_reported_beside_the_free_ones(generations, bow_embedder, tmp_path):
    from clips.vocab import EMOTIONS

    gens = [dict(g) for g in generations]
    for i, g in enumerate(r for r in gens if r["task"] == "emotion"):
        # the free answers are right on even clips; the likeliest answer is "calm" (no clip's emotion), then the
        # true one on the first four clips and "sad" on the rest
        second = g["emotion"] if i < 4 else "sad"
        g["answer_logp"] = {e: -1.0 if e == "calm" else -2.0 if e == second else -9.0 for e in EMOTIONS}
    m = compute_metrics(gens, embedder=bow_embedder, n_boot=100)
    emotion = m["tasks"]["emotion"]
    assert emotion["metrics"]["accuracy"]["value"] == 0.5
    # clips 4-7 are happy, sad, angry, neutral: "sad" is right once
    assert emotion["metrics"]["accuracy_closed_set"]["value"] == pytest.approx(5 / 8)
    assert emotion["closed_set"]["labels"] == ["neutral", "happy", "sad", "angry"]
    assert emotion["per_emotion"]["accuracy_closed_set"]["sad"] == {"value": 1.0, "n": 2}
    text = write_report(tmp_path / "eval", m, gens, title="Closed set").read_text()
    assert f"- **accuracy_closed_set**: {METRIC_HELP['accuracy_closed_set']}" in text
    assert "| accuracy_closed_set | 0.625 [" in text
    assert "Closed-set answers, over neutral, happy, sad, angry:" in text
    assert (tmp_path / "eval" / "confusion_emotion_closed_set.png").read_bytes()[:4] == b"\x89PNG"
    # without likelihoods (a cascade, an older evaluation) there is no closed-set figure, not a wrong one
    plain = compute_metrics(generations, embedder=bow_embedder, n_boot=100)
    assert "accuracy_closed_set" not in plain["tasks"]["emotion"]["metrics"]


def test_reply_examples_are_those_with_a_reference(generations, bow_embedder, tmp_path):
    """A clip outside teacher.share has no reference reply: the report's examples show replies beside what they
    aimed at, not an empty reference."""
    unreferenced = {**generations[0], "id": "clip-no-ref", "reference": None}
    assert generations[0]["task"] == "response"
    gens = [unreferenced] + generations
    m = compute_metrics(gens, embedder=bow_embedder, n_boot=50)
    text = write_report(tmp_path / "eval", m, gens, title="t").read_text()
    examples = text.split("## Task `response`")[1].split("## Task")[0].split("Examples")[1]
    assert "clip-no-ref" not in examples and examples.count("reference: oh no you sound") == 3
