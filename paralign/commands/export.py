"""``paralign export RUN_OR_CKPT --out DIR``: a trained model as a self-describing folder."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a trained model as a folder to hand on, serve or load (paralign.load)",
        description="Writes config.json (the base LLM and encoder by name, source and content hash; the trained "
                    "parts; audio, prompt and tasks; the training data; the recipe), model.safetensors (the "
                    "trained weights only) and README.md (a model card with the run's evaluation figures). The "
                    "frozen models are not copied: a loader loads them from where they came from and refuses "
                    "others.")
    parser.add_argument("source", help="a run folder (its checkpoints/last.ckpt) or a checkpoint file")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paralign.model_folder import export_model

    config = export_model(args.source, args.out, overwrite=args.overwrite)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir())
    trained = config["trained"]
    print(f"exported {args.source} -> {args.out} ({size / 1e6:.1f} MB): {trained['parameters']:,} trained "
          f"parameters ({', '.join(f'{k} {v:,}' for k, v in sorted(trained['parts'].items()))}); base LLM "
          f"{config['base_models']['llm']['source']}, encoder {config['base_models']['encoder']['source']}")
    return 0
