"""The offline jobs' tests use the data-pipeline fixtures (clips and shards made here)."""
from tests.datamodules.conftest import make_clip_fixture, make_records_fixture, shard_dir  # noqa: F401
