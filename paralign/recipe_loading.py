"""Loading and checking recipes: YAML files (with ``defaults:`` inheritance) or data, merged onto the schema
(``paralign.config``) with command-line ``key=value`` overrides, then checked.

An unknown key, a wrong type or kind, or a value out of range is an error naming the key and the file, or the
command-line override that set it.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, get_type_hints

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from clips.metadata import PROMPT_FIELDS
from clips.tasks import TASK_NAMES
from paralign.config import Recipe, TaskConfig


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
NEGATIVE = ("data.level_dbfs",)  # dB below full scale


def _check_ranges(cfg: DictConfig, where: Where) -> None:
    for keys, ok, rule in ((POSITIVE, lambda v: v > 0, "> 0"), (NON_NEGATIVE, lambda v: v >= 0, ">= 0"),
                           (PROBABILITY, lambda v: 0 <= v <= 1, "in [0, 1]"),
                           (NEGATIVE, lambda v: v < 0, "< 0 (dB below full scale)")):
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
    if cfg.prompt.reply_from == "perceived" and not (cfg.prompt.perceive and cfg.prompt.content == "transcript"):
        raise RecipeError(f"{where('prompt.reply_from', 'prompt.perceive', 'prompt.content')}: "
                          "prompt.reply_from=perceived replies from the words and the emotion the model names: it "
                          "needs prompt.perceive=true and prompt.content=transcript")
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
    if cfg.encoder.speaker_norm and (cfg.encoder.type != "whisper" or cfg.encoder.lora_rank
                                     or cfg.encoder.trainable_layers):
        keys = ("encoder.speaker_norm", "encoder.type", "encoder.lora_rank", "encoder.trainable_layers")
        raise RecipeError(f"{where(*keys)}: encoder.speaker_norm needs a frozen Whisper (encoder.type whisper, "
                          "encoder.lora_rank 0, encoder.trainable_layers 0): its speakers' statistics are computed "
                          "once, before training")
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
