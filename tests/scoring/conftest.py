"""The scoring tests use the evaluation tests' deterministic embedder (no model load)."""
from tests.evaluation.conftest import bow_embedder  # noqa: F401
