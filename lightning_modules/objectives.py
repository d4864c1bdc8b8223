"""Alignment tasks, their loss side: how much each task's loss counts, from which step, and of what kind.

The data side of a task (its prompts, targets and sampling share) is in ``clips/tasks.py``; both are built
from the same ``tasks:`` section of the recipe.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    weight: float = 1.0
    start_step: int = 0
    ramp_steps: int = 0
    loss: str = "ce"  # ce | kl | ce+kl
    kl_weight: float = 1.0
    kl_temperature: float = 1.0
    kl_source: str = "cached"  # cached top-k log-probs from the shards | online: a second LLM pass on the words

    def weight_at(self, step: int) -> float:
        """The loss weight at a global step: 0 before ``start_step``, then a linear ramp to ``weight``."""
        if step < self.start_step:
            return 0.0
        if self.ramp_steps <= 0:
            return self.weight
        return self.weight * min(1.0, (step - self.start_step + 1) / self.ramp_steps)

    @property
    def online_kl(self) -> bool:
        return "kl" in self.loss and self.kl_source == "online"


def build_objectives(cfg_tasks) -> dict[str, Objective]:
    """The enabled tasks' objectives from a recipe's ``tasks`` section, in the order of ``build_tasks``."""
    return {name: Objective(name=name, weight=tc.weight, start_step=tc.start_step, ramp_steps=tc.ramp_steps,
                            loss=tc.loss, kl_weight=tc.kl_weight, kl_temperature=tc.kl_temperature,
                            kl_source=tc.kl_source)
            for name, tc in cfg_tasks.items() if tc.enabled}
