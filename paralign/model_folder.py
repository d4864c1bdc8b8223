"""A trained model: loaded from a checkpoint or an exported model folder (``load_trained``), and exported as a
self-describing folder holding everything but the frozen models, which it names.

``paralign export RUN_OR_CKPT --out DIR`` writes

- ``config.json``: paralign's version; the frozen LLM and speech encoder by name, source and a content hash of
  their weights (a loader refuses another base model with one line naming it); the trained parts and their shapes;
  sample rate, features, the prompt format and each task's instructions; the training data; the recipe;
- ``model.safetensors``: the trained weights only (adapter, layer mix, LoRA, trained encoder layers, heads), never a
  pickle;
- ``README.md``: a model card in the Hugging Face convention (:mod:`paralign.model_card`).

``load_model(DIR)`` (also ``paralign.load``) builds the recipe's model, loads the frozen parts from where they
came from, checks their hashes and loads the trained weights: the same model as the checkpoint, answering the same.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lightning_modules.speech_llm import FROZEN_PREFIX, SpeechLLM, load_frozen_llm
from paralign.checkpoint_io import read_checkpoint, recipe_of_checkpoint

FORMAT = "paralign-model"
FORMAT_VERSION = 1
CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
# Where the offline aliases' weights come from (hub ids, for the model card's ``base_model``).
HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "whisper-base": "openai/whisper-base",
           "whisper-tiny.en": "openai/whisper-tiny.en"}


class ModelFolderError(ValueError):
    """A model folder that cannot be loaded (missing, not one of paralign's, another base model); one line."""


def is_model_folder(path: str | Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file() and (Path(path) / WEIGHTS_NAME).is_file()


# ---- export --------------------------------------------------------------------------------------------------------
def resolve_checkpoint(source: str | Path) -> Path:
    """A run folder (its ``checkpoints/last.ckpt``) or a checkpoint file."""
    source = Path(source)
    if source.is_dir():
        last = source / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise ModelFolderError(f"{source} is a folder without checkpoints/last.ckpt: give a run folder or a "
                                   "checkpoint file")
        return last
    if not source.is_file():
        raise ModelFolderError(f"{source}: no such run folder or checkpoint")
    return source


def export_model(source: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write the model folder of the run or checkpoint ``source`` into ``out``; returns its ``config.json``.
    The folder appears whole or not at all (written beside, then renamed)."""
    from paralign.model_card import model_card

    ckpt = resolve_checkpoint(source)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ModelFolderError(f"{out} exists and is not empty: choose another --out (or --overwrite)")
    cfg = recipe_of_checkpoint(ckpt)
    state = read_checkpoint(ckpt)
    model = SpeechLLM(cfg)
    model.on_load_checkpoint(state)  # refuses a checkpoint of another model configuration
    model.load_state_dict(state["state_dict"], strict=False)
    weights = {k: v.detach().clone().contiguous() for k, v in state["state_dict"].items()}
    run_dir = ckpt.resolve().parents[1]
    config = describe(model, cfg, weights, state, run_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "paralign_format": FORMAT})
    os.chmod(tmp / WEIGHTS_NAME, 0o644)  # safetensors writes 0600; a folder to hand on is readable like its others
    (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    (tmp / CARD_NAME).write_text(model_card(config, _eval_metrics(run_dir)), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return config


def describe(model: SpeechLLM, cfg: DictConfig, weights: dict[str, torch.Tensor], state: dict[str, Any],
             run_dir: Path) -> dict[str, Any]:
    """The folder's ``config.json``."""
    frozen = base_model_hashes(model)
    encoder_name = cfg.encoder.name or cfg.encoder.hf_name
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "paralign_version": importlib.metadata.version("paralign"),
        "base_models": {
            "llm": {"name": cfg.llm.name, "source": HUB_IDS.get(cfg.llm.name, model.llm.model_id),
                    "dtype": cfg.llm.dtype, **frozen["llm"]},
            "encoder": {"type": cfg.encoder.type, "name": encoder_name,
                        "source": ("none: trained from scratch" if cfg.encoder.type == "conformer"
                                   else HUB_IDS.get(encoder_name, encoder_name)), **frozen["encoder"]},
        },
        "trained": {
            "parameters": sum(v.numel() for v in weights.values()),
            "parts": _part_sizes(weights),
            "adapter": OmegaConf.to_container(cfg.adapter), "llm_hidden_size": model.llm.hidden_size,
            "layer_mix": cfg.encoder.layer_mix if cfg.encoder.type != "conformer" else None,
            "lora": ({"rank": cfg.encoder.lora_rank, "alpha": cfg.encoder.lora_alpha,
                      "targets": list(cfg.encoder.lora_targets)} if cfg.encoder.lora_rank > 0 else None),
            "heads": {kind: list(head.weight.shape[::-1]) for kind, head in model.classifiers.items()},
        },
        "audio": {"sample_rate": cfg.data.sample_rate, "features": cfg.data.features},
        "prompt": {"system_prompt": cfg.llm.system_prompt, "framing": OmegaConf.to_container(cfg.prompt),
                   "tasks": {name: {"instructions": list(task.instructions), "target": task.target}
                             for name, task in model.tasks.items()}},
        "training": {"global_step": state.get("global_step"), "epoch": state.get("epoch"),
                     "init_from": cfg.init_from, "data": _training_data(cfg, run_dir)},
        "recipe": OmegaConf.to_container(cfg, resolve=True),
    }


def base_model_hashes(model: SpeechLLM) -> dict[str, dict[str, Any]]:
    """sha256 over the frozen weights (names, dtypes, shapes and bytes, in name order): the LLM's, and the speech
    encoder's pretrained weights that stayed frozen (none for an encoder trained from scratch)."""
    frozen = model.frozen_keys()
    state = model.state_dict()
    groups = {"llm": sorted(k for k in frozen if k.startswith(FROZEN_PREFIX)),
              "encoder": sorted(k for k in frozen if not k.startswith(FROZEN_PREFIX))}
    out = {}
    for group, keys in groups.items():
        digest = hashlib.sha256()
        for key in keys:
            tensor = state[key].detach().cpu().contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        out[group] = {"frozen_parameters": sum(state[k].numel() for k in keys),
                      "sha256": digest.hexdigest() if keys else None}
    return out


def _part_sizes(weights: dict[str, torch.Tensor]) -> dict[str, int]:
    """Trained parameters per top-level part (``adapter``, ``encoder``, ``classifiers``, ``ctc``)."""
    sizes: dict[str, int] = {}
    for key, value in weights.items():
        part = key.split(".", 1)[0]
        sizes[part] = sizes.get(part, 0) + value.numel()
    return sizes


def _training_data(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """What the run trained on: the source, and per shard folder the hours, clips and speakers of each split (from
    the folder's ``manifest.json``, where it is still there)."""
    from paralign.data import shard_sources

    folders = [Path(cfg.data.dir)]
    for source in shard_sources(cfg)["train"] or []:
        source = source["shards"] if isinstance(source, dict) else source
        if Path(str(source)).is_dir() and Path(str(source)) not in folders:
            folders.append(Path(str(source)))
    corpora = []
    for folder in folders:
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            continue
        data = json.loads(manifest.read_text(encoding="utf-8"))
        corpora.append({"folder": str(folder), "hours": data.get("hours", {}),
                        "clips_per_split": _clips_per_split(data),
                        "speakers": {s: len(v) for s, v in data.get("speakers_per_split", {}).items()},
                        "emotions": sorted(e for e in data.get("labels", {}).get("emotion", {}) if e != "None")})
    corpus = cfg.data.corpus.name if cfg.data.source == "corpus" else None
    return {"source": cfg.data.source, "corpus": corpus, "shard_folders": corpora}


def _clips_per_split(manifest: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shard in manifest.get("shards", []):
        counts[shard["split"]] = counts.get(shard["split"], 0) + shard["samples"]
    return counts


def _eval_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "eval" / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ---- load ----------------------------------------------------------------------------------------------------------
def read_config(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder}: no such folder")
    if not is_model_folder(folder):
        raise ModelFolderError(f"{folder} is not a paralign model folder (no {CONFIG_NAME} and {WEIGHTS_NAME}: "
                               "make one with `paralign export RUN --out DIR`)")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{folder / CONFIG_NAME} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or "recipe" not in config:
        raise ModelFolderError(f"{folder / CONFIG_NAME} is not a paralign model config")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFolderError(f"{folder} was written by a newer paralign (model format "
                               f"{config['format_version']}; this one reads up to {FORMAT_VERSION}): upgrade")
    return config


def folder_recipe(folder: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The recipe the folder's model was trained with, checked by the schema; ``overrides`` as on the command line
    (e.g. ``llm.name=/models/SmolLM2-135M-Instruct`` where the base LLM lives elsewhere here)."""
    from paralign.recipe_loading import recipe_from_data

    return recipe_from_data(read_config(folder)["recipe"], Path(folder) / CONFIG_NAME, overrides)


def load_model(folder: str | Path, cfg: DictConfig | None = None) -> SpeechLLM:
    """The folder's model in eval mode. ``cfg``: its recipe, e.g. with overrides (default: as saved). Refuses,
    in one line naming it, a base model that cannot be loaded or is not the one the model was trained with."""
    folder = Path(folder)
    config = read_config(folder)
    cfg = cfg if cfg is not None else folder_recipe(folder)
    base = config["base_models"]
    llm = _built(lambda: load_frozen_llm(cfg), "LLM", cfg.llm.name, base["llm"]["source"])
    encoder_name = cfg.encoder.name or cfg.encoder.hf_name or cfg.encoder.type
    model = _built(lambda: SpeechLLM(cfg, llm=llm), "speech encoder", encoder_name, base["encoder"]["source"])
    for group, found in base_model_hashes(model).items():
        want = base[group].get("sha256")
        if want is not None and found["sha256"] != want:
            label = "LLM" if group == "llm" else "speech encoder"
            raise ModelFolderError(
                f"{folder}: the base {label} loaded as '{cfg.llm.name if group == 'llm' else encoder_name}' is not "
                f"the one this model was trained on ({base[group]['source']}; weights sha256 "
                f"{found['sha256'][:12]}..., expected {want[:12]}...)")
    try:
        weights = load_file(str(folder / WEIGHTS_NAME))
    except (SafetensorError, OSError) as err:
        raise ModelFolderError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file ({err})") from None
    model.check_checkpoint_keys(weights)
    unexpected = sorted(set(weights) - set(model.state_dict()))
    if unexpected:
        raise ModelFolderError(f"{folder / WEIGHTS_NAME} holds weights this model has not ({len(unexpected)}), "
                               f"e.g. {unexpected[:3]}: it was exported from another model configuration")
    model.load_state_dict(weights, strict=False)
    return model.eval()


def _built(build: Any, what: str, name: str, source: str) -> Any:
    try:
        return build()
    except (OSError, RuntimeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFolderError(f"cannot load the base {what} '{name}' ({source}) this model needs: {reason}; "
                               f"install it, or point at a copy (e.g. llm.name=<folder>)") from None


def load_trained(cfg: DictConfig, ckpt: str | Path) -> SpeechLLM:
    """The recipe's model with the trainable weights of ``ckpt``, a checkpoint or an exported model folder (the
    frozen LLM comes from its own source)."""
    if is_model_folder(ckpt):
        return load_model(ckpt, cfg)
    state = read_checkpoint(ckpt)
    model = SpeechLLM(cfg)
    model.on_load_checkpoint(state)
    model.load_state_dict(state["state_dict"], strict=False)
    return model.eval()
