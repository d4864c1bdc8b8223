"""Judge scores broken down by question type (method 2's QA benchmark) in the metrics and the report."""
from __future__ import annotations

from paralign.evaluation.judge import Judge
from paralign.evaluation.report import render_markdown
from paralign.evaluation.figures import compute_metrics


class ReplyLengthJudge(Judge):
    """Scores a reply by its word count x 10, read from the rubric (a deterministic stand-in for an LLM)."""

    judge_id = "fake:length"

    def complete(self, prompt: str) -> str:
        reply = prompt.split("Assistant's reply to rate: ")[1].split("\n")[0]
        return f"Score: {10 * len(reply.split())}"


def test_judge_is_reported_per_question_type(bow_embedder):
    rows = [{"id": f"q{i}", "task": "qa", "prompt": "<speech> Q?", "reply": reply, "reference": "a b c d",
             "emotion": "sad", "question_type": qtype}
            for i, (reply, qtype) in enumerate([("a b", "content"), ("a b c d", "content"),
                                                ("a", "content+emotion"), ("a b c", "content+gender")])]
    metrics = compute_metrics(rows, embedder=bow_embedder, judge=ReplyLengthJudge(), n_boot=50)
    per_type = metrics["tasks"]["qa"]["per_question_type"]["judge"]
    assert {t: (v["value"], v["n"]) for t, v in per_type.items()} == {
        "content": (30.0, 2), "content+emotion": (10.0, 1), "content+gender": (30.0, 1)}
    report = render_markdown(metrics, rows, {}, "qa")
    assert "| question type | rouge1 | rougeL | semantic_similarity | judge |" in report
    assert "| content+emotion | " in report and "10.0 (1)" in report
