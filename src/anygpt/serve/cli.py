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
    """The options `anygpt serve` and `anygpt demo` share (model, scheduler, address), from the
    one flag vocabulary (cli_flags), each range-checked on parsing."""
    from anygpt import cli_flags
    from anygpt.lm.backends import BACKENDS

    p = cli_flags.Parser(prog=prog, description=description, epilog=epilog)
    cli_flags.add_model(p, "anygpt-tiny", "anygpt-tiny (default), random-64x2, random-64x2-media, or a model folder")
    p.add_argument("--template", choices=["MMGPT", "AnyGPT"], default=None, help="chat template (default: the model's)")
    p.add_argument("--max-batch", type=cli_flags.positive_int, default=8, metavar="N",
                   help="requests decoded together (default 8)")
    p.add_argument("--max-queue", type=cli_flags.positive_int, default=64, metavar="N",
                   help="requests waiting beyond the running batch; more get 503 with Retry-After (default 64)")
    p.add_argument("--timeout", type=cli_flags.Number(float, above=0, high=7 * 24 * 3600), default=300.0, metavar="S",
                   help="seconds per request, waiting included (default 300)")
    cli_flags.add_engine(p, BACKENDS, with_hf=False)
    cli_flags.add_threads(p)
    p.add_argument("--media-cache", type=cli_flags.count_or_zero, default=256, metavar="N",
                   help="encoded media remembered by content hash (default 256)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=cli_flags.port_int, default=port, help=f"port to bind, 1-65535 (default {port})")
    return p


def build_parser() -> argparse.ArgumentParser:
    from anygpt import cli_flags

    megabytes = cli_flags.Number(float, above=0, high=4096)
    p = service_parser("anygpt serve", __doc__, EXAMPLE, 8000)
    p.add_argument("--api-key", default=None,
                   help=f"clients must send 'Authorization: Bearer KEY' (or set {API_KEY_ENV}); an empty key is refused")
    p.add_argument("--max-body-mb", type=megabytes, default=32.0, metavar="MB", help="largest request body (default 32)")
    p.add_argument("--max-attachment-mb", type=megabytes, default=16.0, metavar="MB",
                   help="largest attachment (default 16)")
    p.add_argument("--max-audio-seconds", type=cli_flags.Number(float, above=0, high=3600), default=120.0, metavar="S",
                   help="longest audio attachment (default 120)")
    return p


def api_key(args: argparse.Namespace) -> str | None:
    """--api-key, else $ANYGPT_API_KEY, else None (no authentication). An empty key is refused:
    it would turn authentication off without a word."""
    from anygpt.errors import UsageError

    if args.api_key is not None:
        if not args.api_key.strip():
            raise UsageError("--api-key: empty; give a key, or leave the flag out to serve without one")
        return args.api_key
    env = os.environ.get(API_KEY_ENV)
    if env is not None and not env.strip():
        raise UsageError(f"{API_KEY_ENV}: set but empty; set a key, or unset it to serve without one")
    return env


def load_service(args: argparse.Namespace, **config):
    """The model named by --model, in a ChatService configured from the shared options."""
    import torch

    from anygpt.loaders import load_model
    from anygpt.serve.service import ChatService, ServeConfig

    torch.set_num_threads(args.threads)
    model = load_model(args.model, template=args.template)
    cfg = ServeConfig(model_name=os.path.basename(str(args.model).rstrip("/")), max_batch=args.max_batch,
                      max_queue=args.max_queue, timeout=args.timeout, cache_items=args.media_cache,
                      quantize="int8" if args.int8 else None, engine=args.engine, threads=args.threads, **config)
    return ChatService(model, cfg)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    key = api_key(args)
    from anygpt.errors import AnyGPTError
    from anygpt.serve.media import MediaLimits

    try:
        import uvicorn

        from anygpt.serve.app import create_app

        limits = MediaLimits(max_bytes=int(args.max_attachment_mb * 2**20), max_audio_seconds=args.max_audio_seconds)
        service = load_service(args, api_key=key,
                               max_body_bytes=int(args.max_body_mb * 2**20), limits=limits)
        app = create_app(service)
    except (ValueError, ImportError) as e:
        if isinstance(e, AnyGPTError):
            raise
        raise AnyGPTError(str(e)) from e  # the dispatcher prints it (and its traceback with --debug)
    print(f"anygpt serve: {service.config.model_name} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
