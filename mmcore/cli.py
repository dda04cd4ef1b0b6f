"""The `mmcore` command: parses arguments, assembles a runner, prints. No logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmcore import constants as C
from mmcore.adapters import PromptRenderer
from mmcore.assemble import RunnerConfig, assemble, config_schema, load_config, parse_assignments, with_overrides
from mmcore.chat_model import AUTO, ChatModel, build_chat_model
from mmcore.config import GenerationConfig
from mmcore.errors import MMCoreError
from mmcore.inputs import TokensInput
from mmcore.plugins import PluginManager, get_plugin_manager
from mmcore.program import Program
from mmcore.runner import GenerationResult, MultimodalRunner, TextLLMRunner
from mmcore.speculative.settings import speculative_overrides

__all__ = ["main", "build_parser"]

# The CLI is greedy and does not echo unless told (the library keeps ExecuTorch's defaults).
CLI_GENERATION_DEFAULTS = GenerationConfig(echo=False, temperature=0.0)
_GENERATION_FLAGS = (
    "max_new_tokens", "seq_len", "temperature", "top_k", "top_p", "seed", "num_bos", "num_eos", "stop",
    "ignore_eos", "echo",
)  # fmt: skip


class _OrderedInput(argparse.Action):
    """Collects `--text`, `--tokens`, `--image`... into one list, in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        items = list(getattr(namespace, "inputs", None) or [])
        items.append((self.metavar or self.dest, values))
        namespace.inputs = items


def _token_list(value: str) -> TokensInput:
    try:
        return TokensInput(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token ids like 1,2,3, got {value!r}") from None


def _add_generation_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation (flags override the config file)")
    group.add_argument("--max-new-tokens", type=int, help="cap on emitted tokens (-1: up to the context)")
    group.add_argument("--seq-len", type=int, help="cap on total positions (-1: the context length)")
    group.add_argument("--temperature", type=float, help="0 = greedy (the CLI default)")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens (0: all)")
    group.add_argument("--top-p", type=float, help="nucleus sampling mass (1: all)")
    group.add_argument("--seed", type=int, help="sampler seed, for reproducible sampling")
    group.add_argument("--num-bos", type=int, help="BOS tokens before the first text")
    group.add_argument("--num-eos", type=int, help="EOS tokens after the first text")
    group.add_argument("--stop", action="append", help="stop string (repeatable)")
    group.add_argument("--ignore-eos", action="store_true", default=None, help="keep generating past EOS")
    group.add_argument("--echo", action="store_true", default=None, help="print the prompt text first")
    group.add_argument("--speculative", choices=["ngram", "draft", "off"],
                       help="speculative decoding: prompt lookup, a draft model, or off")
    group.add_argument("--draft-model", help="the draft .pte for --speculative draft (same tokenizer)")
    group.add_argument("--num-draft-tokens", type=int, help="most draft tokens verified per decoder call")


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help='print one JSON object {"text", "tokens", "stats"}')
    parser.add_argument("--stats", action="store_true", help="print ExecuTorch-style statistics to stderr")


def build_parser(plugin_manager: PluginManager | None = None) -> argparse.ArgumentParser:
    """The argument parser; `--<modality>` options come from the installed plugins."""
    parser = argparse.ArgumentParser(prog="mmcore", description="Run multimodal LLMs exported as ExecuTorch .pte")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="generate from a .pte program")
    run.add_argument("program", nargs="?", help="the .pte program (or `program` in --config)")
    run.add_argument("--tokenizer", help="tokenizer file or directory (default: the program's folder)")
    run.add_argument("--data-path", help="external weights (.ptd) of a program exported with them")
    run.add_argument("--config", help="TOML config: program, tokenizer, adapter, modality settings, generation")
    run.add_argument("--adapter", help="model adapter (default: detected; see `mmcore inspect`)")
    run.add_argument("--raw", action="store_true",
                     help="prefill the inputs as they are, without the adapter's chat template")  # fmt: skip
    run.add_argument("--set", action="append", default=[], metavar="MODALITY.KEY=VALUE",
                     help="a modality setting, e.g. image.resample=bilinear (value parsed as TOML)")  # fmt: skip
    run.add_argument("--tokens", type=_token_list, action=_OrderedInput, metavar="tokens",
                     help="token ids prefilled as they are, e.g. 1,2,3 (repeatable, ordered)")  # fmt: skip
    for name, help_text in _plugin_input_options(plugin_manager):
        run.add_argument(f"--{name}", action=_OrderedInput, metavar=name, help=help_text)
    _add_generation_flags(run)
    _add_output_flags(run)

    demo = sub.add_parser("demo", help="ask the built-in demo model what it sees and hears")
    demo.add_argument("--image", help="a picture of one coloured shape (default: the shipped sample)")
    demo.add_argument("--audio", help="a recording of a tone (default: the shipped sample)")
    demo.add_argument("--text", help="the question (default: the one the model was trained on)")
    _add_output_flags(demo)

    chat = sub.add_parser("chat", help="a conversation that reuses the KV cache between turns")
    chat.add_argument("program", nargs="?", help="the .pte program (or `program` in --config)")
    chat.add_argument("--tokenizer", help="tokenizer file or directory (default: the program's folder)")
    chat.add_argument("--data-path", help="external weights (.ptd) of a program exported with them")
    chat.add_argument("--config", help="TOML config: program, tokenizer, adapter, modality settings, generation")
    chat.add_argument("--adapter", help="model adapter (default: detected)")
    chat.add_argument("--set", action="append", default=[], metavar="MODALITY.KEY=VALUE", help="a modality setting")
    chat.add_argument("--jsonl", action="store_true", help="read one JSON message per line, answer one JSON per line")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--context-policy", choices=["error", "sliding"], default="error",
                      help="when a turn does not fit: fail (default) or drop the oldest turns")  # fmt: skip
    _add_generation_flags(chat)

    inspect = sub.add_parser("inspect", help="show a program's methods, metadata, adapter and context budget")
    inspect.add_argument("program", help="the .pte program")
    inspect.add_argument("--tokenizer", help="tokenizer file or directory (default: the program's folder)")
    inspect.add_argument("--data-path", help="external weights (.ptd) of a program exported with them")
    inspect.add_argument("--adapter", help="model adapter to report on (default: detected)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")

    from mmcore.batch.command import add_batch_parser

    add_batch_parser(sub)

    sub.add_parser("plugins", help="list installed plugins").add_argument("--json", action="store_true")
    config = sub.add_parser("config", help="config file tools")
    config.add_argument("action", choices=["schema"], help="schema: print the config file's JSON Schema")
    from mmcore.serve.cli import add_serve_parser

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mmcore` command; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        for noisy in ("torchao", "torch.utils._pytree"):  # import-time warnings of optional kernels
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        pm = get_plugin_manager()
        parser = build_parser(pm)
        args = parser.parse_args(args_list)
        if args.command == "plugins":
            return _cmd_plugins(pm, args)
        if args.command == "config":
            print(json.dumps(config_schema(pm), indent=2))
            return 0
        if args.command == "demo":
            return _cmd_demo(pm, args)
        if args.command == "inspect":
            return _cmd_inspect(pm, args)
        if args.command == "batch":
            from mmcore.batch.command import run_batch_command

            return run_batch_command(args, parser)
        if args.command == "serve":
            from mmcore.serve.cli import run_serve

            return run_serve(args, pm, parser)
        if args.command == "chat":
            from mmcore.chat_cli import run_chat

            config = _runner_config(args, pm, parser)
            model, program = _chat_model(config, pm)
            if model is None:
                return run_chat(assemble(config, plugin_manager=pm, program=program), config.generation, args)
            return run_chat(model.runner, config.generation, args, renderer=model.renderer)
        return _cmd_run(pm, args, parser)
    except MMCoreError as exc:
        if debug:
            raise
        print(f"mmcore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mmcore: interrupted", file=sys.stderr)
        return 130


def _plugin_input_options(pm: PluginManager | None) -> list[tuple[str, str]]:
    if pm is None:
        return []
    return [
        (handler.name, f"a {handler.name} input (repeatable, ordered)")
        for handler in pm.modality_registry().handlers
        if callable(getattr(handler, "parse_cli", None)) and handler.name != "tokens"
    ]


def _generation_config(args: argparse.Namespace, base: GenerationConfig) -> GenerationConfig:
    """`base` with the generation flags given on the command line applied."""
    given = {name: getattr(args, name) for name in _GENERATION_FLAGS if getattr(args, name, None) is not None}
    if "stop" in given:
        given["stop"] = tuple(given["stop"])
    speculative = speculative_overrides(
        base.speculative, getattr(args, "speculative", None), getattr(args, "draft_model", None),
        getattr(args, "num_draft_tokens", None),
    )  # fmt: skip
    if speculative is not base.speculative:
        given["speculative"] = speculative
    return base.replace(**given)


def _runner_config(args: argparse.Namespace, pm: PluginManager, parser: argparse.ArgumentParser) -> RunnerConfig:
    """The config file (if any) with the command line's program, tokenizer, --set and flags applied."""
    if args.config:
        config = load_config(args.config, plugin_manager=pm, generation_base=CLI_GENERATION_DEFAULTS)
    elif args.program:
        config = load_config({"program": args.program}, plugin_manager=pm, generation_base=CLI_GENERATION_DEFAULTS)
    else:
        parser.error("give the program: mmcore run PROGRAM ... (or `program = ...` in a --config file)")
    settings = parse_assignments(args.set, parser.error)
    config = with_overrides(
        config, program=args.program if args.config else None, tokenizer=args.tokenizer, modalities=settings,
        plugin_manager=pm,
    )  # fmt: skip
    if args.data_path:
        config = dataclasses.replace(config, data_path=Path(args.data_path))
    changes: dict[str, Any] = {"generation": _generation_config(args, config.generation)}
    if getattr(args, "adapter", None):
        if args.adapter != AUTO:
            pm.adapter_registry().get(args.adapter)  # an unknown name fails here, listing the installed ones
        changes["adapter"] = args.adapter
        if args.adapter != config.adapter:
            changes["adapter_options"] = {}
    return dataclasses.replace(config, **changes)


def _chat_model(config: RunnerConfig, pm: PluginManager) -> tuple[ChatModel | None, Program]:
    """The program's `ChatModel` (adapter named or detected; None for text-only programs) and the
    loaded program, so it is loaded once."""
    program = Program(config.program, data_path=config.data_path)
    if not program.has_method(C.TEXT_DECODER):
        return None, program
    adapter = config.adapter if config.adapter is not None else AUTO
    return build_chat_model(dataclasses.replace(config, adapter=adapter), plugin_manager=pm, program=program), program


def _cmd_run(pm: PluginManager, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    raw_inputs = getattr(args, "inputs", None) or []
    if not raw_inputs:
        others = "".join(f", --{name} ..." for name, _ in _plugin_input_options(pm) if name != "text")
        parser.error(f"give at least one input: --text T, --tokens 1,2,3{others}")
    config = _runner_config(args, pm, parser)
    registry = pm.modality_registry()
    inputs: list[Any] = []
    for kind, value in raw_inputs:
        handler = None if kind == "tokens" else registry.get(kind)
        inputs.append(handler.parse_cli(value) if handler is not None else value)  # type: ignore[attr-defined]
    model, program = (None, None) if args.raw else _chat_model(config, pm)
    if model is not None and isinstance(model.renderer, PromptRenderer):
        # One user turn, media in command-line order, through the model's chat template.
        kinds = [kind for kind, _ in raw_inputs]
        if "tokens" in kinds:
            parser.error(f"--tokens prefills ids as they are; add --raw to use it with the '{model.name}' adapter")
        content = [_content_part(kind, item) for kind, item in zip(kinds, inputs, strict=True)]
        return _print_result(model.chat([{"role": "user", "content": content}], config.generation,
                                        token_callback=None if args.json else _print_piece), args)  # fmt: skip
    runner = model.runner if model is not None else assemble(config, plugin_manager=pm, program=program)
    if isinstance(runner, TextLLMRunner):
        inputs = [getattr(item, "text", item) for item in inputs]
    return _generate_and_print(runner, inputs, config.generation, args)


def _content_part(kind: str, item: Any) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": getattr(item, "text", item)}
    return {"type": kind, kind: item}


def _cmd_inspect(pm: PluginManager, args: argparse.Namespace) -> int:
    from mmcore.inspection import format_report, inspect_program

    if args.adapter and args.adapter != AUTO:
        pm.adapter_registry().get(args.adapter)
    report = inspect_program(
        args.program, tokenizer=args.tokenizer, adapter=args.adapter, plugin_manager=pm, data_path=args.data_path
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _cmd_demo(pm: PluginManager, args: argparse.Namespace) -> int:
    from mmcore.demo import DEMO_CONFIG, DemoRequest, demo_inputs, demo_runner, is_built, sample_audio, sample_image

    if args.image is None and args.audio is None:
        request = DemoRequest(sample_image(), sample_audio(), args.text)
    else:
        request = DemoRequest(args.image, args.audio, args.text)
    if not is_built():
        print("mmcore: exporting the demo model (first run only, about 20 s)...", file=sys.stderr)
    runner = demo_runner(pm)
    return _generate_and_print(runner, demo_inputs(request, pm), DEMO_CONFIG, args)


def _generate_and_print(
    runner: TextLLMRunner | MultimodalRunner, inputs: list[Any], config: GenerationConfig, args: argparse.Namespace
) -> int:
    stream = None if args.json else _print_piece
    return _print_result(runner.generate(inputs, config, token_callback=stream), args)


def _print_result(result: GenerationResult, args: argparse.Namespace) -> int:
    if args.json:
        report = {"text": result.text, "tokens": result.tokens, "stats": result.stats.to_dict()}
        if "speculative" in result.stats.extra:
            report["speculative"] = result.stats.extra["speculative"]
        print(json.dumps(report))
    else:
        sys.stdout.write("\n")
        sys.stdout.flush()
    if args.stats:
        print(f"PyTorchObserver {result.stats.to_json_string()}", file=sys.stderr)
        print(result.stats.report(), file=sys.stderr)
    return 0


def _print_piece(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _cmd_plugins(pm: PluginManager, args: argparse.Namespace) -> int:
    infos = pm.plugin_infos()
    if args.json:
        listing = {"plugins": [info.__dict__ for info in infos], "failures": [f.__dict__ for f in pm.failures]}
        print(json.dumps(listing, indent=2))
        return 0
    if not infos:
        print("no plugins installed (pip install mmcore-text)")
    for info in infos:
        print(f"{info.name} {info.version or '-'}")
        if info.modalities:
            print(f"  modalities: {', '.join(info.modalities)}")
            print(f"  input types: {', '.join(info.input_types)}")
        if info.tokenizer_loaders:
            print(f"  tokenizers: {', '.join(info.tokenizer_loaders)}")
        if info.adapters:
            print(f"  adapters: {', '.join(info.adapters)}")
        print(f"  hooks: {', '.join(info.hooks)}")
    for failure in pm.failures:
        print(f"{failure.name}: FAILED in {failure.stage}: {failure.error}")
    return 0
