from tests.datamodules.conftest import make_clip_fixture, make_records_fixture, shard_dir  # noqa: F401
