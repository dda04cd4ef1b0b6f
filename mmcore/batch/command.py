"""`mmcore batch MODEL.pte INPUT.jsonl -o OUTPUT.jsonl`: the command's arguments and its run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from mmcore.assemble import parse_assignments
from mmcore.errors import ConfigError

__all__ = ["add_batch_parser", "run_batch_command"]


def add_batch_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `batch` subcommand to the `mmcore` parser's subparsers."""
    batch = sub.add_parser(
        "batch", help="run an OpenAI Batch API JSONL file through a program (local workers or Ray)",
        description="Answers every request of INPUT (OpenAI Batch API lines) into OUTPUT, one line per "
        "custom_id, appended as they finish. Rerunning the same command skips what OUTPUT already holds.",
    )  # fmt: skip
    batch.add_argument("program", help="the .pte program")
    batch.add_argument("input", help="input JSONL: one {custom_id, method, url, body} per line")
    batch.add_argument("-o", "--output", required=True, help="output JSONL (appended to; resumes when it exists)")
    batch.add_argument("--config", help="TOML config: program, tokenizer, adapter, modality settings, generation")
    batch.add_argument("--adapter", help="model adapter (default: detected; see `mmcore inspect`)")
    batch.add_argument("--tokenizer", help="tokenizer file or directory (default: the program's folder)")
    batch.add_argument("--data-path", help="external weights (.ptd) of a program exported with them")
    batch.add_argument("--set", action="append", default=[], metavar="MODALITY.KEY=VALUE", help="a modality setting")
    batch.add_argument("--workers", type=int, default=1, help="worker processes or Ray actors (default 1)")
    batch.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run on Ray: no value starts a local Ray; 'auto' or an address joins one")  # fmt: skip
    batch.add_argument("--model-id", help="the model id bodies may name as 'model' (default: the program's file stem)")
    batch.add_argument("--media-dir", help="folder that media paths in bodies are relative to (default: INPUT's)")
    batch.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    batch.add_argument("--summary-json", action="store_true", help="print the summary as one JSON object on stdout")
    return batch  # type: ignore[no-any-return]


def run_batch_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run `mmcore batch`; returns the exit status (0 done, 1 error, 130/143 stopped by a signal)."""
    from mmcore.batch.job import Engine, run_batch
    from mmcore.batch.local import InlineEngine, ProcessPoolEngine
    from mmcore.batch.progress import format_summary
    from mmcore.batch.worker import ModelOptions

    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    missing = [name for name in ("pydantic", "prometheus_client") if importlib.util.find_spec(name) is None]
    if missing:  # the bodies come from the server's ChatService
        raise ConfigError(f"mmcore batch needs {', '.join(missing)}; install them: pip install 'mmcore[serve]'")
    options = ModelOptions(
        program=str(Path(args.program).resolve()),
        config=str(Path(args.config).resolve()) if args.config else None,
        adapter=args.adapter,
        tokenizer=str(Path(args.tokenizer).resolve()) if args.tokenizer else None,
        data_path=str(Path(args.data_path).resolve()) if args.data_path else None,
        settings=parse_assignments(args.set, parser.error),
        media_dir=str(Path(args.media_dir or Path(args.input).parent).resolve()),
        served_model_id=args.model_id,
    )
    engine: Engine
    if args.ray is not None:
        from mmcore.batch.ray import RayEngine

        engine = RayEngine(options, args.workers, address=None if args.ray == "local" else args.ray)
    elif args.workers == 1:
        engine = InlineEngine(options)
    else:
        engine = ProcessPoolEngine(options, args.workers)
    result = run_batch(args.input, args.output, engine, quiet=args.quiet)
    if args.summary_json:
        print(json.dumps({**result.stats.to_dict(), "stopped": result.stopped_by is not None}))
    elif not args.quiet:
        print(format_summary(result.stats, stopped=result.stopped_by is not None), file=sys.stderr)
    if result.stopped_by is not None:
        return 128 + result.stopped_by
    return 0 if result.stats.remaining == 0 else 1
