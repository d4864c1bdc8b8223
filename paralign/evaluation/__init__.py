"""Evaluation: turning model replies into metrics with confidence intervals, a validated LLM judge, and a report."""
