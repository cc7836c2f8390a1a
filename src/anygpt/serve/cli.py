"""`anygpt serve`: an OpenAI-compatible HTTP API for a model (see docs/serve.md)."""

from __future__ import annotations

import argparse
import os
import sys

EXAMPLE = """examples:
  anygpt serve --model anygpt-tiny --host 127.0.0.1 --port 8000
  anygpt serve --model random-64x2-media --port 8000 --api-key secret   # random weights, every modality

  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "anygpt-tiny", "messages": [{"role": "user", "content": "Hello!"}]}'

The API key may also come from the environment (ANYGPT_API_KEY); /health never asks for it.
The server binds only to --host (default 127.0.0.1: this machine alone).
"""

API_KEY_ENV = "ANYGPT_API_KEY"


def service_parser(prog: str, description: str, epilog: str, port: int) -> argparse.ArgumentParser:
    """The options `anygpt serve` and `anygpt demo` share: model, scheduler, address, --debug."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="anygpt-tiny", metavar="NAME_OR_DIR",
                   help="anygpt-tiny (default), random-64x2, random-64x2-media, or a model folder")
    p.add_argument("--template", choices=["MMGPT", "AnyGPT"], default=None, help="chat template (default: the model's)")
    p.add_argument("--max-batch", type=int, default=8, metavar="N", help="requests decoded together (default 8)")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="requests waiting beyond the running batch; more get 503 with Retry-After (default 64)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="seconds per request, waiting included (default 300)")
    p.add_argument("--int8", action="store_true", help="int8 projections in the engine (faster, slightly different tokens)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads (default 1)")
    p.add_argument("--media-cache", type=int, default=256, metavar="N",
                   help="encoded media remembered by content hash (default 256)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=port, help=f"port to bind (default {port})")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = service_parser("anygpt serve", __doc__, EXAMPLE, 8000)
    p.add_argument("--api-key", default=None, help=f"clients must send 'Authorization: Bearer KEY' (or set {API_KEY_ENV})")
    p.add_argument("--max-body-mb", type=float, default=32.0, metavar="MB", help="largest request body (default 32)")
    p.add_argument("--max-attachment-mb", type=float, default=16.0, metavar="MB", help="largest attachment (default 16)")
    p.add_argument("--max-audio-seconds", type=float, default=120.0, metavar="S", help="longest audio attachment (default 120)")
    return p


def check_service_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("max_batch", "max_queue", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')}: {value}: must be at least 1")
    if args.timeout <= 0:
        parser.error(f"--timeout: {args.timeout}: must be above 0")
    if args.media_cache < 0:
        parser.error(f"--media-cache: {args.media_cache}: must be at least 0")


def load_service(args: argparse.Namespace, **config):
    """The model named by --model, in a ChatService configured from the shared options."""
    import torch

    from anygpt.loaders import load_model
    from anygpt.serve.service import ChatService, ServeConfig

    torch.set_num_threads(args.threads or 1)
    model = load_model(args.model, template=args.template)
    cfg = ServeConfig(model_name=os.path.basename(str(args.model).rstrip("/")), max_batch=args.max_batch,
                      max_queue=args.max_queue, timeout=args.timeout, cache_items=args.media_cache,
                      quantize="int8" if args.int8 else None, threads=args.threads, **config)
    return ChatService(model, cfg)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_service_options(parser, args)
    for flag in ("max_body_mb", "max_attachment_mb", "max_audio_seconds"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')}: {getattr(args, flag)}: must be above 0")
    from anygpt.errors import AnyGPTError
    from anygpt.serve.media import MediaLimits

    try:
        import uvicorn

        from anygpt.serve.app import create_app

        limits = MediaLimits(max_bytes=int(args.max_attachment_mb * 2**20), max_audio_seconds=args.max_audio_seconds)
        service = load_service(args, api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                               max_body_bytes=int(args.max_body_mb * 2**20), limits=limits)
        app = create_app(service)
    except (AnyGPTError, ValueError, ImportError) as e:
        if args.debug:
            raise
        print(f"anygpt serve: {e}", file=sys.stderr)
        return 1
    print(f"anygpt serve: {service.config.model_name} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.debug else "warning")
    return 0
