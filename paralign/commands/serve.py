"""``paralign serve (--model DIR | --ckpt C) [--host H] [--port P] [--api-key-env VAR] [limits]``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from paralign.commands.model_args import add_model_arguments, model_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a trained model: the OpenAI chat API with audio in, and a page to talk to it",
        description="POST /v1/chat/completions (OpenAI chat format; the audio as an input_audio part, text parts "
                    "around it as the instruction; an extra 'task' field asks a trained task's question), GET "
                    "/v1/models, and a page at / to record or drop a clip and see the reply. Concurrent requests "
                    "are answered in batches.")
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: everyone)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-env", default=None,
                        help="name of an environment variable holding the API key clients must send "
                             "('Authorization: Bearer <key>'); default: no key")
    parser.add_argument("--max-audio-seconds", type=float, default=60.0)
    parser.add_argument("--max-body-mb", type=float, default=25.0)
    parser.add_argument("--max-waiting", type=int, default=64, help="queued requests beyond which a request gets 429")
    parser.add_argument("--max-batch", type=int, default=8, help="requests answered in one model pass")
    parser.add_argument("--batch-window-ms", type=float, default=20.0,
                        help="how long a request waits for others to join its batch")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from paralign.infer import Answerer, load_for_inference
    from paralign.serve import Limits, create_app

    path = model_path(args)
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise SystemExit(f"error: --api-key-env {args.api_key_env}: the variable is not set")
    if min(args.max_audio_seconds, args.max_body_mb, args.max_waiting, args.max_batch) <= 0:
        raise SystemExit("error: --max-audio-seconds, --max-body-mb, --max-waiting and --max-batch must be > 0")
    model, cfg = load_for_inference(path)
    answerer = Answerer(model, cfg, max_new_tokens=args.max_new_tokens, do_sample=False)
    limits = Limits(args.max_audio_seconds, args.max_body_mb, args.max_waiting, args.max_batch, args.batch_window_ms)
    app = create_app(answerer, Path(path).resolve().name if args.model else cfg.name, limits, api_key)
    print(f"serving {path} on http://{args.host}:{args.port} (page: /, API: /v1/chat/completions)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
