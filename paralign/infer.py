"""``paralign infer``: a user's own recordings in, the frozen LLM's replies out."""
from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from omegaconf import DictConfig

from clips.audio import audio_problem, load_audio
from clips.examples import Example, collate
from clips.metadata import MetadataSpec, metadata_text, with_metadata
from clips.tasks import DEFAULT_INSTRUCTIONS, Task
from clips.vocab import EMOTIONS
from datamodules.features import build_features, build_wave_prep
from lightning_modules.speaker_norm import SpeakerMeans
from lightning_modules.speech_llm import SpeechLLM
from paralign.checkpoint_io import recipe_of_checkpoint
from paralign.model_folder import load_trained
from paralign.perceive import perceived_emotions

ENROLLED = "enrolled speaker"  # the one speaker of ``Answerer.enrol``


class InferenceError(ValueError):
    """An input the model cannot be asked about (unreadable, empty or silent audio, a bad prompt)."""


def user_template(task: str | None, prompt: str | None, trained: Mapping[str, Task] | None = None) -> str:
    """The user turn a clip is asked with: ``prompt``, else the instruction the model's ``task`` was trained with
    (``trained``: the model's tasks; a recipe may train one phrasing only), else the task's default one."""
    if prompt:
        return prompt if "{speech}" in prompt else "{speech}\n" + prompt
    if task not in DEFAULT_INSTRUCTIONS or task == "qa":
        raise InferenceError(f"--task must be one of response, emotion, style, asr (got {task!r}); or give --prompt")
    if trained is not None and task in trained:
        return trained[task].instructions[0]
    return DEFAULT_INSTRUCTIONS[task][0]


def check_choices(model: SpeechLLM, choices: Sequence[str]) -> tuple[str, ...]:
    """``choices`` as a closed set of the emotion question, or an InferenceError saying what is wrong with it."""
    task = model.tasks.get("emotion")
    if task is None or task.target != "label":
        raise InferenceError("--choices reads the emotion question's answers: this model was not trained to answer "
                             "it with an emotion label (tasks.emotion)")
    unknown = [c for c in choices if c not in EMOTIONS]
    if unknown:
        raise InferenceError(f"--choices: unknown emotion {unknown[0]!r} (known: {', '.join(EMOTIONS)})")
    if len(set(choices)) < 2:
        raise InferenceError("--choices needs at least two different emotions, e.g. neutral,happy,sad,angry")
    return tuple(dict.fromkeys(choices))


MIN_SECONDS, MAX_SECONDS = 0.1, 60.0
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")  # what a folder given as --audio contributes


def audio_inputs(paths: list[str]) -> list[str]:
    """The files to answer: each path as given, a folder as its own audio files (not its subfolders'), in name
    order. An empty folder stays in the list, to be answered with its own error."""
    files = []
    for path in paths:
        found = sorted(str(p) for p in Path(path).iterdir()
                       if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES) if Path(path).is_dir() else []
        files += found or [path]
    return files


def load_wave(path: str | Path, sample_rate: int) -> np.ndarray:
    if Path(path).is_dir():
        raise InferenceError(f"{path}: a folder with no .wav, .flac or .ogg file")
    if not Path(path).is_file():
        raise InferenceError(f"{path}: no such file")
    return checked_wave(str(path), sample_rate, str(path))


def checked_wave(source: str | bytes, sample_rate: int, name: str, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """``source`` (a path or encoded bytes) as a mono waveform at ``sample_rate``, or an InferenceError starting
    with ``name`` that says why it cannot be asked about. Too long is told from the header, before decoding."""
    try:
        info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else source)
        if info.frames / info.samplerate > max_seconds:
            raise InferenceError(f"{name}: too long ({info.frames / info.samplerate:.1f} s; at most "
                                 f"{max_seconds:g} s: cut it into shorter clips)")
        wave, sr = load_audio(source, sample_rate)
    except InferenceError:
        raise
    except Exception as err:  # soundfile raises several types for unreadable files
        raise InferenceError(f"{name}: cannot read audio ({err})") from None
    problem = audio_problem(wave, sr, min_s=MIN_SECONDS, max_s=max_seconds)
    if problem:
        limit = {"too_short": f" ({wave.size / sr:.2f} s; at least {MIN_SECONDS:g} s)"}.get(problem, "")
        raise InferenceError(f"{name}: {problem.replace('_', ' ')}{limit}")
    return wave


MetadataFor = Callable[[np.ndarray], str]  # a clip's waveform -> the metadata text shown next to its speech


def predicted_metadata(model: SpeechLLM, cfg: DictConfig, spec: MetadataSpec) -> MetadataFor:
    """Method 2 (explicit) on a user's recording, which has no labels: the metadata the model's own emotion
    classifier head predicts (dimensional scores where the recipe's train shards give emotion centroids)."""
    from clips.shard_writer import shard_files
    from prep.label_prediction import LabelPredictor, emotion_centroids

    if "emotion" not in model.classifiers:
        raise InferenceError("this model was trained with metadata in its prompt but has no emotion classifier "
                             "head to predict it: give --metadata '[emotion: ...; valence ..., ...]'")
    shards = shard_files(cfg.data.dir, "train") if Path(cfg.data.dir).is_dir() else []
    predictor = LabelPredictor(model, emotion_centroids(shards) if shards else {}, model_id="own head")
    fields = MetadataSpec("predicted", spec.fields)
    return lambda wave: metadata_text({"extra": {"predicted": predictor.predict(torch.from_numpy(wave))}}, fields)


@dataclass(frozen=True)
class Question:
    """What a clip is asked: a user-turn template with ``{speech}``, and (method 2) its metadata text."""
    template: str
    metadata: MetadataFor | None = None


@dataclass
class Answer:
    path: str
    replies: list[str] = field(default_factory=list)  # one per question, in order
    error: str | None = None  # why the file got no reply (one line naming it)
    heard: str | None = None  # Whisper's transcript, where the model reads the words (prompt.content: transcript)
    perceived: str | None = None  # the emotion the model named before replying (prompt.perceive)
    choices: dict[str, float] | None = None  # the emotion question's closed set: each answer's probability in it

    @property
    def choice(self) -> str | None:
        """The likeliest of the closed set's emotions (``Answerer(choices=...)``)."""
        return max(self.choices, key=self.choices.get) if self.choices else None

    @property
    def reply(self) -> str | None:
        return self.replies[0] if self.replies else None


class Answerer:
    """A loaded model, ready to answer waveforms: its features, and Whisper where it reads the words
    (``prompt.content: transcript``, transcribed here as in training)."""

    def __init__(self, model: SpeechLLM, cfg: DictConfig,
                 transcriber: Callable[[list[np.ndarray]], list[str]] | None = None,
                 choices: Sequence[str] | None = None, **generation: Any) -> None:
        """``transcriber``: waveforms -> their words, for a model that reads them (default: the recipe's Whisper).
        ``choices``: emotions; the emotion question is also answered as the likeliest of them (closed set)."""
        self.model, self.cfg, self.generation = model, cfg, generation
        self.choices = check_choices(model, choices) if choices else None
        self.features = build_features(cfg)
        self.prep = build_wave_prep(cfg)
        self.speaker: str | None = None  # set by ``enrol``
        self.transcriber = transcriber
        if transcriber is None and model.llm.prompter.framing.content == "transcript":
            from lightning_modules.whisper_transcriber import WhisperTranscriber
            from paralign.data import asr_model

            self.transcriber = WhisperTranscriber.load(asr_model(cfg), cfg.encoder.cache_dir)

    @torch.no_grad()
    def enrol(self, waves: Iterable[np.ndarray]) -> int:
        """Hear every clip from now on as one speaker's, whose mean is that of ``waves`` (a model trained with
        ``encoder.speaker_norm`` normalised each training speaker so; one clip alone is heard as it is). Returns how
        many clips it took."""
        norm = getattr(self.model.encoder, "speaker_norm", None)
        if norm is None:
            raise InferenceError("this model was trained without encoder.speaker_norm: it takes no speaker "
                                 "statistics")
        means, count = SpeakerMeans(), 0
        for wave in waves:
            feats = self.features(self.prep(wave, self.cfg.data.sample_rate))[None].to(self.model.device)
            states, lens = self.model.encoder.normed_states(feats, torch.tensor([feats.shape[1]], device=feats.device))
            means.add(states, lens, [ENROLLED])
            count += 1
        if count < 2:
            raise InferenceError(f"one speaker's statistics need at least two of their clips, got {count}")
        norm.set_means(means.means(), {ENROLLED})
        self.speaker = ENROLLED
        return count

    def answer(self, waves: list[np.ndarray], questions: list[list[Question]]) -> list[Answer]:
        """Each wave's replies to its questions (one batch per distinct template: an emotion answer stops after a
        few tokens, a reply goes on); a reply to the response task's question comes after the model named the
        feeling it hears (``prompt.perceive``)."""
        answers = [Answer(path=str(i)) for i in range(len(waves))]
        if self.transcriber is not None and waves:
            for answer, words in zip(answers, self.transcriber(waves)):
                answer.heard = words
        rows = [(i, j, q) for i, qs in enumerate(questions) for j, q in enumerate(qs)]
        for answer, qs in zip(answers, questions):
            answer.replies = [""] * len(qs)
        for template in dict.fromkeys(q.template for _, _, q in rows):
            group = [(i, j, q) for i, j, q in rows if q.template == template]
            batch = collate([self._example(waves[i], q, answers[i].heard) for i, _, q in group])
            cues = perceived_emotions(self.model, batch)  # None for rows that do not reply with a feeling
            for (i, j, _), reply, cue in zip(group, self.model.generate(batch, cues=cues, **self.generation), cues):
                answers[i].replies[j] = reply
                answers[i].perceived = cue or answers[i].perceived
            if self.choices and batch.task[0] == "emotion":
                for (i, _, _), choices in zip(group, self._closed_set(batch)):
                    answers[i].choices = choices
        return answers

    def _closed_set(self, batch) -> list[dict[str, float]]:
        """Each row's probability of each of ``choices``' answers, renormalised over them."""
        from paralign.evaluation.answer_likelihood import answer_logprobs

        rows = answer_logprobs(self.model, batch, self.model.tasks["emotion"], self.choices)
        return [dict(zip(row, torch.tensor(list(row.values())).softmax(-1).tolist())) for row in rows]

    def _example(self, wave: np.ndarray, question: Question, heard: str | None) -> Example:
        user = with_metadata(question.template, question.metadata(wave)) if question.metadata else question.template
        wave = self.prep(wave, self.cfg.data.sample_rate)  # trimmed and levelled as the model's loader did
        # a question the response task was trained with replies as it does (perceive first, where it is on)
        task = next((name for name, t in self.model.tasks.items() if question.template in t.instructions), None)
        example = Example.question("0", self.features(wave), self.model.llm.prompter, user, heard, task)
        return dataclasses.replace(example, meta={"speaker": self.speaker}) if self.speaker else example

    def answer_files(self, paths: list[str], questions: list[Question],
                     batch_size: int = 8) -> Iterator[list[Answer]]:
        """The answers to the files ``paths``, in order, ``batch_size`` files at a time: memory stays bounded and
        replies come as they are ready. A file that cannot be asked about gets its error; the rest are answered."""
        for start in range(0, len(paths), batch_size):
            answers, waves = [Answer(path) for path in paths[start:start + batch_size]], []
            for answer in answers:
                try:
                    waves.append(load_wave(answer.path, self.cfg.data.sample_rate))
                except InferenceError as err:
                    answer.error = str(err)
            readable = [a for a in answers if a.error is None]
            for answer, done in zip(readable, self.answer(waves, [questions] * len(waves))):
                answer.replies, answer.heard = done.replies, done.heard
                answer.perceived, answer.choices = done.perceived, done.choices
            yield answers


def load_for_inference(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[SpeechLLM, DictConfig]:
    """A trained model and its recipe, from a checkpoint (its run's recipe) or an exported model folder."""
    from paralign.model_folder import folder_recipe, is_model_folder

    cfg = folder_recipe(path, overrides) if is_model_folder(path) else recipe_of_checkpoint(path)
    return load_trained(cfg, path), cfg
