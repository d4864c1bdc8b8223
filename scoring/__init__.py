"""Scoring shared by validation (callbacks) and evaluation (`paralign eval`): answers matched to labels and
judged right or wrong, the linear probe, and the metrics, so that the two figures cannot drift apart."""
