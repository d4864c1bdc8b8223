"""paralign: teach a frozen LLM to hear how something is said.

``paralign.load(DIR)`` loads a model folder written by ``paralign export``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning_modules.speech_llm import SpeechLLM


def load(folder: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SpeechLLM:
    """The model of an exported folder, in eval mode; ``overrides``: recipe keys as on the command line (e.g.
    ``["llm.name=/models/SmolLM2-135M-Instruct"]`` where the base LLM lives elsewhere)."""
    from paralign.model_folder import folder_recipe, load_model

    return load_model(folder, folder_recipe(folder, overrides))
