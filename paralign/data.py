"""``paralign data``: build exactly the shards a recipe needs (cached), and say where they are."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

SPLITS = ("train", "val", "test")


def prepare_data(cfg: DictConfig) -> None:
    """Make the corpus the recipe's ``data.source`` names; a second call finds it and does nothing."""
    d = cfg.data
    # Method 2 (implicit): the corpus is built in qa_generation.from_dir, and data.dir gets its shards with QA pairs.
    base = cfg.qa_generation.from_dir or d.dir
    if d.source == "tiny":
        from prep.tiny_corpus import build_tiny_corpus

        build_tiny_corpus(base, seed=d.seed)
    elif d.source in ("synth", "import"):
        from prep.teacher import generate_teacher_replies

        if d.source == "synth":
            from prep.synth import build_synth_shards

            build_synth_shards(base, clips=d.synth.clips, seed=d.synth.seed, workers=max(1, d.num_workers))
        else:
            import_corpus_shards(cfg, Path(base))
        if needs_teacher(cfg):
            generate_teacher_replies(cfg, base)
        if needs_transcripts(cfg):
            from prep.transcribe import transcribe_shards

            transcribe_shards(base, asr_model(cfg), cache_dir=cfg.encoder.cache_dir)
    if cfg.qa_generation.from_dir:
        from prep.qa_generate import generate_qa, is_current

        if not is_current(cfg.qa_generation, d.dir):  # replies already asked for come from its cache
            generate_qa(cfg.qa_generation, base, d.dir)


def import_corpus_shards(cfg: DictConfig, out: Path) -> None:
    """``data.source: import``: the corpus of ``data.corpus`` into shards in ``out``, once (a folder with a
    manifest is taken as done; the writer resumes a cut import), split by speaker where it defines no split."""
    from prep.importers import import_corpus
    from prep.importers.speaker_split import CORPORA_WITH_SPLIT, SpeakerSplit, write_split_shards

    if (out / "manifest.json").exists():
        return
    c = cfg.data.corpus
    split = SpeakerSplit(list(c.val_speakers), list(c.test_speakers), c.val_share, c.test_share, c.split_seed)
    if split.active and c.name in CORPORA_WITH_SPLIT:
        raise ValueError(f"data.corpus: {c.name} defines its own split, which is kept; drop the speaker settings")
    summary, _ = write_split_shards(import_corpus(c.name, c.root), out, split, target_sr=cfg.data.sample_rate)
    if not summary.kept and not summary.already_written:
        raise ValueError(f"data.corpus.root={c.root}: no clip could be imported (see {out / 'rejects.jsonl'})")


def needs_teacher(cfg: DictConfig) -> bool:
    """Whether any enabled task trains on (or is scored against) cached teacher replies."""
    from clips.tasks import DEFAULT_TARGET

    return any(t.enabled and (t.target or DEFAULT_TARGET[name]) == "teacher" for name, t in cfg.tasks.items())


def needs_transcripts(cfg: DictConfig) -> bool:
    """Whether the recipe reads Whisper's transcripts: the student's words (``prompt.content: transcript``) or a
    cascade's."""
    return cfg.prompt.transcripts == "whisper" and (cfg.prompt.content == "transcript" or cfg.eval.cascade != "none")


def asr_model(cfg: DictConfig) -> str:
    """The Whisper that transcribes: ``prompt.asr_model``, else the recipe's Whisper encoder, else whisper-base."""
    if cfg.prompt.asr_model:
        return cfg.prompt.asr_model
    return cfg.encoder.name if cfg.encoder.type == "whisper" else "whisper-base"


def shard_sources(cfg: DictConfig) -> dict[str, list | None]:
    """Train / val / test sources: the recipe's lists, else the ``<split>-*.tar`` of ``data.dir``."""
    d = cfg.data
    sources: dict[str, list | None] = {}
    for split in SPLITS:
        given = list(d[split])
        if not given and Path(d.dir).is_dir():
            given = [d.dir]
        sources[split] = given or None
    weights = list(d.train_weights)
    if weights:
        if len(weights) != len(sources["train"] or []):
            raise ValueError(f"data.train_weights has {len(weights)} entries for {len(sources['train'] or [])} "
                             "train sources")
        sources["train"] = [{"shards": s, "weight": w} for s, w in zip(sources["train"], weights)]
    return sources
