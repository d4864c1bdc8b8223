"""Whisper transcripts cached in the shards: ``<key>.asr.json`` = ``{"text", "model"}`` for every clip.

With ``prompt.content: transcript`` the LLM reads the words as text beside the speech tokens. Training reads
Whisper's transcripts, not the corpus's, so that it sees what inference gets (Whisper's errors included). Each
finished batch is appended to ``asr_cache.jsonl`` (keyed by the model and a hash of the clip's audio), so a cut run
resumes, and a second run over the same shards transcribes nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from clips.audio import load_audio
from clips.schema import AUDIO_EXTS
from clips.shard_writer import ASR_FILE, rewrite_shards, shard_files
from clips.tar_samples import iter_tar_samples
from prep.jsonl_cache import append_cache, read_cache
from scoring.metrics import corpus_wer, word_errors

log = logging.getLogger(__name__)

CACHE_NAME = "asr_cache.jsonl"


@dataclass
class TranscribeSummary:
    clips: int = 0
    from_cache: int = 0
    transcribed: int = 0
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    wer: float | None = None  # against the corpus's own transcripts, where it has them
    compared: int = 0

    def __str__(self) -> str:
        rate = f", {self.seconds / self.transcribed:.3f} s a clip" if self.transcribed else ""
        lines = [f"whisper transcripts: {self.clips} clips ({self.from_cache} from the cache, {self.transcribed} "
                 f"transcribed in {self.seconds:.1f} s{rate})"]
        if self.wer is not None:
            lines.append(f"  WER against the corpus's transcripts: {self.wer:.3f} ({self.compared} clips)")
        lines += [f"  skipped clips, {reason}: {n}" for reason, n in self.skipped.items()]
        return "\n".join(lines)


def audio_key(model: str, audio: bytes) -> str:
    return hashlib.sha1(model.encode() + b"\0" + audio).hexdigest()


def transcribe_shards(shard_dir: str | os.PathLike, model: str, *, cache_dir: str | None = None,
                      batch_size: int = 32, transcriber=None) -> TranscribeSummary:
    """Transcribe every clip of the shards in ``shard_dir`` (cached) and store ``<key>.asr.json`` in place.

    ``transcriber``: an already loaded ``WhisperTranscriber`` (default: ``model`` loaded here, once needed).
    """
    shards = shard_files(shard_dir)
    if not shards:
        raise FileNotFoundError(f"no <split>-NNNNNN.tar shards in {shard_dir}")
    cache_path = Path(shard_dir) / CACHE_NAME
    cache = read_cache(cache_path)
    summary = TranscribeSummary()
    hashes: dict[str, str] = {}
    refs: dict[str, str] = {}
    for shard in tqdm(shards, desc="whisper transcripts", unit="shard"):
        todo: list[tuple[str, object]] = []
        with open(shard, "rb") as f:
            for sample in iter_tar_samples(f):
                key = str(sample["__key__"])
                ext = next((e for e in AUDIO_EXTS if e in sample), None)
                if ext is None:
                    summary.skipped["no audio"] = summary.skipped.get("no audio", 0) + 1
                    continue
                summary.clips += 1
                h = hashes[key] = audio_key(model, sample[ext])
                if "json" in sample:
                    refs[key] = json.loads(sample["json"]).get("transcript") or ""
                if h not in cache:
                    todo.append((h, sample[ext]))
        if not todo:
            continue
        if transcriber is None:
            from lightning_modules.whisper_transcriber import WhisperTranscriber

            transcriber = WhisperTranscriber.load(model, cache_dir, batch_size=batch_size)
        start = time.perf_counter()
        for i in range(0, len(todo), 4 * batch_size):  # appended every few batches: a cut run loses little
            chunk = todo[i:i + 4 * batch_size]
            waves = [load_audio(audio, transcriber.extractor.sampling_rate)[0] for _, audio in chunk]
            new = {h: {"text": text} for (h, _), text in zip(chunk, transcriber(waves))}
            append_cache(cache_path, new)
            cache.update(new)
        summary.transcribed += len(todo)
        summary.seconds += time.perf_counter() - start
    summary.from_cache = summary.clips - summary.transcribed

    def add(chunk: list[tuple[str, dict]]) -> list[dict[str, bytes]]:
        return [{"asr.json": json.dumps({"text": cache[hashes[key]]["text"], "model": model},
                                        ensure_ascii=False).encode("utf-8")} if key in hashes else {}
                for key, _ in chunk]

    pairs = [(cache[hashes[k]]["text"], ref) for k, ref in refs.items() if ref.strip() and k in hashes]
    if pairs:
        summary.wer = corpus_wer(word_errors([p for p, _ in pairs], [r for _, r in pairs]))
        summary.compared = len(pairs)
    # recorded before the rewrite, whose manifest then carries it
    record = {"model": model, "wer": summary.wer, "compared_clips": summary.compared}
    (Path(shard_dir) / ASR_FILE).write_text(json.dumps(record) + "\n")
    rewrite_shards(shard_dir, shard_dir, add, batch_size=256)
    print(summary)
    return summary
