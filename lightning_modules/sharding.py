"""FSDP2 (``fully_shard``) and activation checkpointing for ``SpeechLLM``, applied in its ``configure_model``.

``trainer.strategy: fsdp`` runs Lightning's ``ModelParallelStrategy`` (``ShardedStrategy`` below) over one flat
data-parallel mesh of every rank. The units, innermost first:

- each LLM decoder layer, then the whole frozen LLM (``FrozenLLM``: embeddings, final norm and LM head). The
  frozen LLM is sharded too, so that an 8B-70B model fits; no gradient ever flows into it, so its shards cost no
  communication beyond the all-gathers of the forward (and backward) passes;
- each encoder block, then the whole encoder; the adapter; each classifier head.

The LightningModule itself is not sharded: ``training_step`` calls its submodules, never its own ``forward``.
Each unit must be entered through its own ``__call__`` so that FSDP2 gathers its weights first; that is why every
use of the LLM's weights goes through ``FrozenLLM.forward``.
"""
from __future__ import annotations

import warnings
from typing import Any

from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed._composable import checkpoint as checkpoint_activations
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard


def decoder_layers(llm: nn.Module) -> nn.ModuleList:
    """The decoder layers of a ``FrozenLLM`` (any transformers causal LM with ``get_decoder().layers``)."""
    decoder = llm.model.get_decoder()
    if not isinstance(getattr(decoder, "layers", None), nn.ModuleList):
        raise TypeError(f"{type(llm.model).__name__}: no decoder.layers to shard or checkpoint")
    return decoder.layers


def checkpoint_blocks(module: nn.Module, llm: bool, encoder: bool) -> None:
    """Recompute each decoder layer's / encoder block's activations in the backward pass instead of keeping them.

    The composable ``checkpoint`` keeps parameter names (checkpoints stay interchangeable with and without it)
    and works under the frozen LLM's eval mode, where transformers' own gradient checkpointing switches off."""
    blocks = ([*decoder_layers(module.llm)] if llm else []) + ([*module.encoder.blocks()] if encoder else [])
    for block in blocks:
        checkpoint_activations(block)
    if llm:  # a layer run again in the backward pass would append to the shared opening's KV cache twice
        module.llm.share_opening = False


def shard(module: nn.Module, mesh: DeviceMesh) -> None:
    """``fully_shard`` the units listed in the module docstring (inner units first, as FSDP2 requires)."""
    online = [name for name, objective in module.objectives.items() if objective.online_kl]
    if online:  # its teacher pass runs only on ranks whose batch holds the task; sharded, every rank must join
        raise ValueError(f"trainer.strategy=fsdp does not support kl_source=online (tasks {', '.join(online)}): "
                         "use kl_source=cached (teacher top-k in the shards), or ddp")
    if module.ctc is not None:  # it reads the LLM's embedding table whole, which sharding splits across ranks
        raise ValueError("trainer.strategy=fsdp does not support ctc.enabled: use ddp, or turn ctc off")
    # FSDP2 warns at every step that a unit returned a view (Linear on 3-D inputs does); the warning is about
    # in-place edits of such outputs, and SpeechLLM makes none.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    # every rank must make the same passes (their all-gathers pair up), whatever opening its rows share
    module.llm.share_opening = False
    for layer in decoder_layers(module.llm):
        fully_shard(layer, mesh=mesh)
    # Explicitly resharded after forward: a root unit would otherwise keep the embeddings and LM head (1B
    # parameters for Llama-3-8B) gathered from its forward to the end of the backward pass.
    fully_shard(module.llm, mesh=mesh, reshard_after_forward=True)
    for block in module.encoder.blocks():
        fully_shard(block, mesh=mesh)
    fully_shard(module.encoder, mesh=mesh)
    fully_shard(module.adapter, mesh=mesh)
    for head in module.classifiers.values():
        fully_shard(head, mesh=mesh)


class ShardedStrategy(ModelParallelStrategy):
    """FSDP2 over every rank (data parallel only), checkpoints as one file without the frozen LLM.

    Lightning's ``ModelParallelStrategy`` would gather the whole model, frozen LLM included, on rank 0 to save a
    full checkpoint; here only the trainable modules are gathered, which is what ``SpeechLLM`` keeps anyway.
    """

    def __init__(self, frozen_prefix: str = "llm.", **kwargs: Any) -> None:
        super().__init__(tensor_parallel_size=1, save_distributed_checkpoint=False, **kwargs)
        self.frozen_prefix = frozen_prefix

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # one flat mesh: shard over every rank
        super().setup_environment()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        # Every rank takes part in each full_tensor() all-gather, in the same (module) order.
        trainable = {name: child for name, child in self.model.named_children()
                     if not f"{name}.".startswith(self.frozen_prefix)}
        state = {}
        for name, child in trainable.items():
            part = get_model_state_dict(child, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            state.update({f"{name}.{key}": value for key, value in part.items()})
        return state if self.global_rank == 0 else {}

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        # Read through the trainer's CheckpointIO plugin (paralign's: data only, one refusal line per unusable file)
        # to check the keys before any rank loads; Lightning's own read below never unpickles code either.
        saved = self.checkpoint_io.load_checkpoint(checkpoint_path)
        self.lightning_module.check_checkpoint_keys(saved["state_dict"])
        return super().load_checkpoint(checkpoint_path, weights_only=True)
