"""`paralign qa-generate`: LLM-generated question-answer pairs per clip, written into new shards (method 2)."""
from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from paralign.config import QAGenerationConfig
from paralign.recipe_loading import RecipeError, load_recipe

# flag -> (qa_generation key, type, help)
OPTIONS = {
    "--model": ("model", str, "local LLM (tiny | smollm2-135m | path | hub id) or, with --base-url, the served "
                              "model's id"),
    "--base-url": ("base_url", str, "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1"),
    "--api-key-env": ("api_key_env", str, "environment variable holding the endpoint's key"),
    "--prompt-version": ("prompt_version", str, "prompt template prep/prompts/qa_generate_<version>.txt "
                                                "(v1: a JSON list of pairs; v2: one pair as Question:/Answer: lines)"),
    "--reply-prefix": ("reply_prefix", str, "the start of a local model's reply, e.g. 'Question:' with v2"),
    "--pairs": ("pairs", int, "pairs asked for (and kept at most) per clip"),
    "--max-new-tokens": ("max_new_tokens", int, "reply length limit of the generator"),
    "--batch-size": ("batch_size", int, "prompts per batch (local generator)"),
    "--max-question-words": ("max_question_words", int, "reject longer questions"),
    "--max-answer-words": ("max_answer_words", int, "reject longer answers"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = QAGenerationConfig()
    parser = subparsers.add_parser(
        "qa-generate", help="generate question-answer pairs per clip into new shards",
        description=("An LLM gets each clip's transcript with its emotion category and valence / arousal / "
                     "dominance and returns QA pairs (content and content+emotion questions) as JSON or as "
                     "Question:/Answer: lines; they are "
                     "parsed, validated, deduplicated and filtered, counted by reason, and stored as "
                     "<key>.qa.json in the shards written to --out. Resumable: raw replies are cached in "
                     "--out/qa_cache.jsonl. Settings: the flags, else the recipe's qa_generation section "
                     "(--recipe), else the defaults shown."))
    parser.add_argument("--shards", type=Path, required=True, help="folder of <split>-NNNNNN.tar shards")
    parser.add_argument("--out", type=Path, required=True, help="folder for the new shards (not --shards)")
    parser.add_argument("--recipe", help="take the settings from this recipe's qa_generation section")
    for flag, (key, kind, text) in OPTIONS.items():
        parser.add_argument(flag, type=kind, default=None, help=f"{text} (default: {getattr(defaults, key)})")
    parser.add_argument("--splits", nargs="+", default=None, help=f"splits to ask about (default: {defaults.splits})")
    parser.add_argument("--allow-label-in-question", action="store_true",
                        help="keep questions that name the clip's emotion label (rejected by default)")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> DictConfig:
    if args.recipe:
        try:
            settings = load_recipe(args.recipe).qa_generation
        except RecipeError as err:
            raise SystemExit(f"error: {err}") from None
    else:
        settings = OmegaConf.structured(QAGenerationConfig)
    for key, _, _ in OPTIONS.values():
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.splits:
        settings.splits = list(args.splits)
    if args.allow_label_in_question:
        settings.forbid_label_in_question = False
    return settings


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from prep.qa_generate import generate_qa  # torch and transformers load only when needed

    try:
        generate_qa(settings, args.shards, args.out)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise SystemExit(f"error: {err}") from None
    return 0
