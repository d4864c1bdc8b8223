"""Method 2 (explicit): paralinguistic metadata written into the user turn next to the speech.

A task with ``metadata.enabled`` shows the LLM, beside the speech, e.g.
``[emotion: sad; valence 1.8, arousal 2.1, dominance 2.4]`` at training and at inference. The values come from
the clip's labels (``source: labels``) or from a predictor's output that ``paralign predict-labels`` stored in the
shards under ``extra.predicted`` (``source: predicted``). Where the source has time-stamped segments (long clips)
and ``segments`` is on, one bracket per segment is written, e.g. ``[0.0-4.0 s: emotion: sad; ...]``.

Templates may place the metadata with ``{metadata}``; otherwise it goes on the line right after ``{speech}``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clips.vocab import marked_styles

DIMENSIONS = ("valence", "arousal", "dominance")
PROMPT_FIELDS = ("emotion", *DIMENSIONS, "style", "gender")  # what ``metadata.fields`` may list
SLOT = "{metadata}"


class MissingMetadata(ValueError):
    """A clip lacks the metadata its task must show (e.g. no predictions in the shards)."""


@dataclass(frozen=True)
class MetadataSpec:
    """What a task writes: from which source, which fields, and whether segment by segment."""

    source: str = "labels"  # labels | predicted
    fields: tuple[str, ...] = ("emotion", "valence", "arousal", "dominance")
    segments: bool = False


def source_values(meta: dict[str, Any], source: str) -> dict[str, Any] | None:
    """The dict the metadata is read from: the clip's labels, or the predictions stored with it (None: none)."""
    if source == "labels":
        return meta
    if source == "predicted":
        return ((meta.get("extra") or {}).get("predicted")) or None
    raise ValueError(f"unknown metadata source {source!r} (known: labels, predicted)")


def describe_values(values: dict[str, Any], fields: tuple[str, ...]) -> str:
    """``emotion: sad; valence 1.8, arousal 2.1, dominance 2.4`` from the known ``fields`` ("" if none known)."""
    parts = []
    if "emotion" in fields and values.get("emotion"):
        parts.append(f"emotion: {values['emotion']}")
    dims = [f"{d} {float(values[d]):.1f}" for d in DIMENSIONS if d in fields and values.get(d) is not None]
    if dims:
        parts.append(", ".join(dims))
    styles = marked_styles(values.get("style")) if "style" in fields else []
    if styles:
        parts.append("style: " + ", ".join(styles))
    if "gender" in fields and values.get("gender"):
        parts.append(f"gender: {values['gender']}")
    return "; ".join(parts)


def metadata_text(meta: dict[str, Any], spec: MetadataSpec) -> str:
    """The bracketed metadata of one clip ("" when its labels know nothing of ``spec.fields``).

    Raises :class:`MissingMetadata` for ``source: predicted`` when the clip holds no predictions: training on a
    mix of shown and silently missing metadata would teach the wrong thing.
    """
    values = source_values(meta, spec.source)
    if values is None:
        raise MissingMetadata(f"clip {meta.get('id')!r} has no predicted labels (extra.predicted); run "
                              "`paralign predict-labels` over its shards or use metadata.source=labels")
    segments = (values.get("segments") or []) if spec.segments else []
    if segments:
        lines = [f"[{float(s['start']):.1f}-{float(s['end']):.1f} s: {body}]"
                 for s in segments if (body := describe_values(s, spec.fields))]
        if lines:
            return "\n".join(lines)
    body = describe_values(values, spec.fields)
    return f"[{body}]" if body else ""


def with_metadata(template: str, text: str) -> str:
    """Put ``text`` into a user-turn template: at ``{metadata}`` if the template has it, else on the line after
    ``{speech}``. Empty ``text`` leaves no blank line behind."""
    if SLOT in template:
        if text:
            return template.replace(SLOT, text)
        return re.sub(r"[ \t]*\{metadata\}[ \t]*\n?", "", template)
    return template.replace("{speech}", "{speech}\n" + text, 1) if text else template
