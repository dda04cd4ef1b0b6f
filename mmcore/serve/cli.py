"""The `mmcore serve` command: load the model once, serve HTTP until SIGINT/SIGTERM, exit 0."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from mmcore.assemble import RunnerConfig, load_config, parse_assignments, with_overrides
from mmcore.chat_model import AUTO, ChatModel, open_model
from mmcore.config import GenerationConfig
from mmcore.content import MediaPolicy
from mmcore.errors import ConfigError
from mmcore.generation_defaults import read_generation_defaults
from mmcore.plugins import PluginManager
from mmcore.serve.config import ServeSettings, serve_table

__all__ = ["add_serve_parser", "listening_socket", "run_serve", "serve_forever"]

logger = logging.getLogger(__name__)


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `serve` subcommand to the `mmcore` parser's subparsers."""
    serve: argparse.ArgumentParser = sub.add_parser("serve", help="serve the model over OpenAI's HTTP API")
    serve.add_argument("program", nargs="?", help="the .pte program (or `program` in --config)")
    serve.add_argument("--tokenizer", help="tokenizer file or directory (default: the program's folder)")
    serve.add_argument("--data-path", help="external weights (.ptd) of a program exported with them")
    serve.add_argument("--config", help="TOML config; its [serve] table holds the flags below")
    serve.add_argument("--adapter", help="model adapter (default: detected)")
    serve.add_argument("--set", action="append", default=[], metavar="MODALITY.KEY=VALUE", help="a modality setting")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8000; 0: any free port)")
    serve.add_argument("--model-id", help="the model id clients send (default: the program's file stem)")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY'")
    serve.add_argument("--parallel", type=int, help="slots serving requests at once, each its own KV cache (default 1)")
    serve.add_argument("--max-queue", type=int, help="requests that may wait for a slot (default 64; more get 429)")
    serve.add_argument("--media-dir", help="allow local media paths and file:// URLs inside this folder")
    serve.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false", default=None,
                       help="prefill every request from scratch (for comparisons)")  # fmt: skip
    serve.add_argument("--demo", action="store_true",
                       help="serve the built-in demo model (exported on first use, as `mmcore demo` does)")  # fmt: skip
    serve.add_argument("--request-timeout", type=float, metavar="SECONDS",
                       help="fail a request (504) that takes longer, queue wait included (default: none)")  # fmt: skip
    serve.add_argument("--tool-parser", choices=["hermes", "mistral"], help="tool-call format (default: the family's)")
    serve.add_argument("--speculative", choices=["ngram", "draft", "off"],
                       help="speculative decoding for every request: prompt lookup, a draft model, or off")  # fmt: skip
    serve.add_argument("--draft-model", help="the draft .pte for --speculative draft (same tokenizer)")
    serve.add_argument("--num-draft-tokens", type=int, help="most draft tokens verified per decoder call")
    return serve


def run_serve(args: argparse.Namespace, pm: PluginManager, parser: argparse.ArgumentParser) -> int:
    """`mmcore serve ...`: returns the exit status."""
    missing = [name for name in ("fastapi", "uvicorn", "sse_starlette", "prometheus_client", "pydantic")
               if importlib.util.find_spec(name) is None]  # fmt: skip
    if missing:
        raise ConfigError(f"mmcore serve needs {', '.join(missing)}; install them: pip install 'mmcore[serve]'")
    settings = serve_table(args.config).replace(
        host=args.host, port=args.port, model_id=args.model_id, api_key=args.api_key, parallel=args.parallel,
        max_queue=args.max_queue, media_dir=Path(args.media_dir) if args.media_dir else None,
        prefix_cache=args.prefix_cache, tool_parser=args.tool_parser, request_timeout=args.request_timeout,
    )  # fmt: skip
    if args.demo:
        model = _demo_model(args, pm, parser)
        settings = settings.replace(model_id=settings.model_id or "mmcore-demo")
    else:
        model = open_model(_runner_config(args, pm, parser), plugin_manager=pm)
    _apply_speculative(model, args)
    serve_forever(model, settings)
    return 0


def _apply_speculative(model: ChatModel, args: argparse.Namespace) -> None:
    """The speculative flags on top of the config's `[generation.speculative]` (the requests' base)."""
    from mmcore.speculative.settings import speculative_overrides

    base = model.runner.generation_config
    speculative = speculative_overrides(base.speculative, args.speculative, args.draft_model, args.num_draft_tokens)
    if speculative is not base.speculative:
        model.runner.generation_config = base.replace(speculative=speculative)


def _demo_model(args: argparse.Namespace, pm: PluginManager, parser: argparse.ArgumentParser) -> ChatModel:
    if args.program or args.config or args.tokenizer or args.adapter or args.set:
        parser.error("--demo serves the built-in demo model: give no PROGRAM, --config, --tokenizer, --adapter, --set")
    from mmcore.demo import demo_chat_model, is_built

    if not is_built():
        print("mmcore: exporting the demo model (first run only, about 20 s)...", file=sys.stderr, flush=True)
    return demo_chat_model(pm)


def _runner_config(args: argparse.Namespace, pm: PluginManager, parser: argparse.ArgumentParser) -> RunnerConfig:
    if not (args.config or args.program):
        parser.error("give the program: mmcore serve PROGRAM ... (or `program = ...` in a --config file)")
    source = args.config or {"program": args.program}
    settings = parse_assignments(args.set, parser.error)

    def configured(base: GenerationConfig | None) -> RunnerConfig:
        config = load_config(source, plugin_manager=pm, generation_base=base)
        return with_overrides(
            config, program=args.program if args.config else None, tokenizer=args.tokenizer, modalities=settings,
            plugin_manager=pm,
        )  # fmt: skip

    config = configured(None)
    defaults = read_generation_defaults(config.program.parent)
    if defaults is not None:  # the model's generation_config.json under the config's [generation] keys
        config = configured(defaults.apply(GenerationConfig()))
    changes: dict[str, Any] = {}
    if args.data_path:
        changes["data_path"] = Path(args.data_path)
    if args.adapter:
        changes["adapter"] = args.adapter
        if args.adapter != config.adapter:
            changes["adapter_options"] = {}
    elif config.adapter is None:
        changes["adapter"] = AUTO
    return dataclasses.replace(config, **changes)


def serve_forever(model: ChatModel, settings: ServeSettings) -> None:
    """Serve `model` until SIGINT/SIGTERM (in-flight requests finish or are cancelled)."""
    import uvicorn

    from mmcore.serve.app import create_app
    from mmcore.serve.chat import ChatService

    media = MediaPolicy(local_files=settings.media_dir is not None, media_dir=settings.media_dir)
    service = ChatService(
        model, model_id=settings.model_id, parallel=settings.parallel, max_queue=settings.max_queue,
        prefix_cache=settings.prefix_cache, media=media, tool_parser=settings.tool_parser,
        request_timeout=settings.request_timeout,
    )  # fmt: skip
    app = create_app(service, api_key=settings.api_key, max_body_bytes=int(settings.max_body_mb * 1024 * 1024))
    sock = listening_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
    server = _uvicorn_server()(config)
    print(f"mmcore: serving {service.model_id!r} ({settings.parallel} slot(s)); listening on http://{host}:{port}",
          file=sys.stderr, flush=True)  # fmt: skip
    server.run(sockets=[sock])
    print("mmcore: server stopped", file=sys.stderr, flush=True)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on `host`:`port` (0: a free port).

    Made with ``proto=IPPROTO_TCP`` on purpose: asyncio turns Nagle's algorithm off (TCP_NODELAY) only
    on sockets whose `proto` says TCP, and `socket.create_server` leaves it 0, so every answer sent in
    two writes (headers, then body) waited ~40 ms for the client's delayed ACK.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _uvicorn_server() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGINT/SIGTERM ends in a graceful shutdown and exit 0: uvicorn
        re-raises the signal after shutting down (a KeyboardInterrupt, or death by SIGTERM)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for in-flight requests
            self.should_exit = True

    return Server
