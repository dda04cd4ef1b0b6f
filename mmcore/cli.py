"""The `mmcore` command: parses arguments, assembles a runner, prints. No logic of its own.

Start-up stays light: only the chosen subcommand's parser is built in full (the others are listed
by name and help), and the runtime (runners, programs, ExecuTorch, torch) is imported only by the
commands that run a program, so `mmcore --help`, `mmcore plugins` and `mmcore config schema` are
quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmcore.config import GenerationConfig
from mmcore.errors import MMCoreError
from mmcore.structured.formats import GrammarSyntax, ResponseFormat

if TYPE_CHECKING:
    from mmcore.assemble import RunnerConfig
    from mmcore.chat_model import ChatModel
    from mmcore.demo_model.export import ExportProgress
    from mmcore.plugins import PluginManager
    from mmcore.program import Program
    from mmcore.runner import GenerationResult, MultimodalRunner, StopReason, TextLLMRunner

__all__ = ["main", "build_parser", "FINISH_REASONS"]

# The CLI is greedy and does not echo unless told (the library keeps ExecuTorch's defaults).
CLI_GENERATION_DEFAULTS = GenerationConfig(echo=False, temperature=0.0)
_GENERATION_FLAGS = (
    "max_new_tokens", "seq_len", "temperature", "top_k", "top_p", "seed", "num_bos", "num_eos", "stop",
    "ignore_eos", "echo", "repetition_penalty", "frequency_penalty", "presence_penalty", "logprobs",
    "response_format",
)  # fmt: skip
#: `GenerationResult.stop_reason` as OpenAI names a choice's `finish_reason`.
FINISH_REASONS: dict[str, str] = {"eos": "stop", "stop_string": "stop", "stopped": "stop", "length": "length"}
#: Libraries whose import-time and export-time warnings are not shown unless `--debug`.
_QUIET_LIBRARIES = ("torch", "torchao", "executorch", "transformers", "optimum", "coremltools")

#: The subcommands and their one-line help, in `mmcore --help` order.
_COMMANDS = {
    "run": "generate from a .pte program",
    "demo": "ask the built-in demo model what it sees and hears",
    "chat": "a conversation that reuses the KV cache between turns",
    "inspect": "show a program's methods, metadata, adapter and context budget",
    "batch": "run an OpenAI Batch API JSONL file through a program (local workers or Ray)",
    "plugins": "list installed plugins",
    "config": "config file tools",
    "serve": "serve the model over OpenAI's HTTP API",
}
#: Commands that never need the plugin manager.
_WITHOUT_PLUGINS = frozenset({"batch", "serve"})


class _OrderedInput(argparse.Action):
    """Collects `--text`, `--tokens`, `--image`... into one list, in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        items = list(getattr(namespace, "inputs", None) or [])
        items.append((self.metavar or self.dest, values))
        namespace.inputs = items


def _token_list(value: str) -> Any:
    from mmcore.inputs import TokensInput

    try:
        return TokensInput(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token ids like 1,2,3, got {value!r}") from None


def _read_text(path: str, flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read the {flag} file {path!r}: {exc}") from None


def _json_schema_file(path: str) -> ResponseFormat:
    """`--json-schema FILE`: a JSON Schema document (named after the file)."""
    text = _read_text(path, "--json-schema")
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--json-schema {path!r} is not valid JSON: {exc}") from None
    try:
        return ResponseFormat.json_schema(schema, name=Path(path).stem)
    except MMCoreError as exc:
        raise argparse.ArgumentTypeError(f"--json-schema {path!r}: {exc}") from None


def _regex(pattern: str) -> ResponseFormat:
    try:
        return ResponseFormat.regex(pattern)
    except MMCoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _grammar_file(path: str) -> ResponseFormat:
    """`--grammar FILE`: Lark syntax, or GBNF when the file ends in `.gbnf`."""
    syntax: GrammarSyntax = "gbnf" if path.lower().endswith(".gbnf") else "lark"
    try:
        return ResponseFormat.grammar(_read_text(path, "--grammar"), syntax=syntax)
    except MMCoreError as exc:
        raise argparse.ArgumentTypeError(f"--grammar {path!r}: {exc}") from None


def _add_generation_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation (flags override the config file)")
    group.add_argument("--max-new-tokens", type=int, help="cap on emitted tokens (-1: up to the context)")
    group.add_argument("--seq-len", type=int, help="cap on total positions (-1: the context length)")
    group.add_argument("--temperature", type=float, help="0 = greedy (the CLI default)")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens (0: all)")
    group.add_argument("--top-p", type=float, help="nucleus sampling mass (1: all)")
    group.add_argument("--seed", type=int, help="sampler seed, for reproducible sampling")
    group.add_argument("--repetition-penalty", type=float,
                       help="> 1 discourages tokens already generated (1: off)")  # fmt: skip
    group.add_argument("--frequency-penalty", type=float,
                       help="subtracted from a token's logit per time it was generated (0: off)")  # fmt: skip
    group.add_argument("--presence-penalty", type=float,
                       help="subtracted from the logit of any token generated before (0: off)")  # fmt: skip
    group.add_argument("--num-bos", type=int, help="BOS tokens before the first text")
    group.add_argument("--num-eos", type=int, help="EOS tokens after the first text")
    group.add_argument("--stop", action="append", help="stop string (repeatable)")
    group.add_argument("--ignore-eos", action="store_true", default=None, help="keep generating past EOS")
    group.add_argument("--echo", action=argparse.BooleanOptionalAction, default=None,
                       help="print the prompt text first (--no-echo: do not; the CLI default)")  # fmt: skip
    group.add_argument("--logprobs", action="store_true", default=None,
                       help="report each generated token's log-probability (in --json / --jsonl output)")  # fmt: skip
    group.add_argument("--speculative", choices=["ngram", "draft", "off"],
                       help="speculative decoding: prompt lookup, a draft model, or off")  # fmt: skip
    group.add_argument("--draft-model", help="the draft .pte for --speculative draft (same tokenizer)")
    group.add_argument("--num-draft-tokens", type=int, help="most draft tokens verified per decoder call")
    shape = parser.add_argument_group("structured output (one of; see docs/structured-output.md)")
    exclusive = shape.add_mutually_exclusive_group()
    exclusive.add_argument("--json-schema", dest="response_format", type=_json_schema_file, metavar="FILE",
                           help="the answer is JSON that validates against the JSON Schema in FILE")  # fmt: skip
    exclusive.add_argument("--regex", dest="response_format", type=_regex, metavar="PATTERN",
                           help="the whole answer matches PATTERN (Rust regex syntax)")  # fmt: skip
    exclusive.add_argument("--grammar", dest="response_format", type=_grammar_file, metavar="FILE",
                           help="the answer parses with the grammar in FILE (Lark, or GBNF for *.gbnf)")  # fmt: skip


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: text, tokens, finish_reason, incomplete, stats")  # fmt: skip
    parser.add_argument("--stats", action="store_true", help="print ExecuTorch-style statistics to stderr")


def _add_debug_flag(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # After the subcommand too: SUPPRESS keeps a subcommand's absent flag from resetting the top one.
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show tracebacks, debug logs and library warnings")  # fmt: skip


def _build_run(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    run: argparse.ArgumentParser = sub.add_parser("run", help=_COMMANDS["run"])
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
    for name, help_text in _plugin_input_options(pm):
        run.add_argument(f"--{name}", action=_OrderedInput, metavar=name, help=help_text)
    _add_generation_flags(run)
    _add_output_flags(run)
    return run


def _build_demo(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    from mmcore.demo import sample_audio, sample_image

    demo: argparse.ArgumentParser = sub.add_parser(
        "demo", help=_COMMANDS["demo"],
        description="Asks the built-in demo model (trained on synthetic data, exported on first use) "
        "which coloured shape it sees and which tone it hears.",
        epilog=f"sample files: {sample_image()} (a red circle) and {sample_audio()} (a high tone); "
        "without --image/--audio both are used. Try them in `mmcore chat` too (/image PATH, /audio PATH).",
    )  # fmt: skip
    demo.add_argument("--image", help="a picture of one coloured shape (default: the shipped sample)")
    demo.add_argument("--audio", help="a recording of a tone (default: the shipped sample)")
    demo.add_argument("--text", help="the question (default: the one the model was trained on)")
    _add_output_flags(demo)
    return demo


def _build_chat(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    chat: argparse.ArgumentParser = sub.add_parser("chat", help=_COMMANDS["chat"])
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
    return chat


def _build_inspect(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    inspect: argparse.ArgumentParser = sub.add_parser("inspect", help=_COMMANDS["inspect"])
    inspect.add_argument("program", help="the .pte program")
    inspect.add_argument("--tokenizer", help="tokenizer file or directory (default: the program's folder)")
    inspect.add_argument("--data-path", help="external weights (.ptd) of a program exported with them")
    inspect.add_argument("--adapter", help="model adapter to report on (default: detected)")
    inspect.add_argument(
        "--image-size",
        action="append",
        default=[],
        metavar="WxH",
        type=_image_size,
        help="also show the encoder calls and placeholder tokens one image of this size "
        "takes (repeatable), e.g. 1000x700",
    )
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    return inspect


def _build_batch(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    from mmcore.batch.command import add_batch_parser

    return add_batch_parser(sub)


def _build_plugins(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    plugins: argparse.ArgumentParser = sub.add_parser("plugins", help=_COMMANDS["plugins"])
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    return plugins


def _build_config(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    config: argparse.ArgumentParser = sub.add_parser("config", help=_COMMANDS["config"])
    config.add_argument("action", choices=["schema"], help="schema: print the config file's JSON Schema")
    return config


def _build_serve(sub: Any, pm: PluginManager | None) -> argparse.ArgumentParser:
    from mmcore.serve.cli import add_serve_parser

    return add_serve_parser(sub)


_BUILDERS: dict[str, Callable[[Any, PluginManager | None], argparse.ArgumentParser]] = {
    "run": _build_run,
    "demo": _build_demo,
    "chat": _build_chat,
    "inspect": _build_inspect,
    "batch": _build_batch,
    "plugins": _build_plugins,
    "config": _build_config,
    "serve": _build_serve,
}


def build_parser(
    plugin_manager: PluginManager | None = None, *, commands: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The argument parser; `--<modality>` options come from the installed plugins.

    `commands` names the subcommands built in full (default: all); the others are listed by name
    and help only, which keeps `mmcore --help` from importing what each subcommand needs.
    """
    from mmcore import __version__

    parser = argparse.ArgumentParser(prog="mmcore", description="Run multimodal LLMs exported as ExecuTorch .pte")
    parser.add_argument("--version", action="version", version=f"mmcore {__version__}")
    _add_debug_flag(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(_COMMANDS) + "}")
    full = set(_COMMANDS if commands is None else commands)
    for name, help_text in _COMMANDS.items():
        command = _BUILDERS[name](sub, plugin_manager) if name in full else sub.add_parser(name, help=help_text)
        _add_debug_flag(command)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` asks for (the top-level options take no values), if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in _COMMANDS else None
    return None


def _quiet_library_warnings() -> None:
    """Hide the libraries' FutureWarning/UserWarning/DeprecationWarning noise (shown with --debug)."""
    for library in _QUIET_LIBRARIES:
        for category in (FutureWarning, UserWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=rf"{library}(\.|$)")
    for noisy in ("torchao", "torch.utils._pytree"):  # import-time log warnings of optional kernels
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mmcore` command; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if debug:
        logging.captureWarnings(True)
    else:
        _quiet_library_warnings()
    try:
        command = _command_of(args_list)
        pm = None
        if command is not None and command not in _WITHOUT_PLUGINS:
            from mmcore.plugins import get_plugin_manager

            pm = get_plugin_manager()
        parser = build_parser(pm, commands=[command] if command else [])
        args = parser.parse_args(args_list)
        debug = args.debug
        return _dispatch(args, pm, parser)
    except MMCoreError as exc:
        if debug:
            raise
        print(f"mmcore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mmcore: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, pm: PluginManager | None, parser: argparse.ArgumentParser) -> int:
    if args.command == "batch":
        from mmcore.batch.command import run_batch_command

        return run_batch_command(args, parser)
    if args.command == "serve":
        from mmcore.plugins import get_plugin_manager
        from mmcore.serve.cli import run_serve

        return run_serve(args, get_plugin_manager(), parser)
    assert pm is not None
    if args.command == "plugins":
        return _cmd_plugins(pm, args)
    if args.command == "config":
        from mmcore.assemble import config_schema

        print(json.dumps(config_schema(pm), indent=2))
        return 0
    if args.command == "demo":
        return _cmd_demo(pm, args)
    if args.command == "inspect":
        return _cmd_inspect(pm, args)
    if args.command == "chat":
        from mmcore.assemble import assemble
        from mmcore.chat_cli import run_chat

        config = _runner_config(args, pm, parser)
        model, program = _chat_model(config, pm)
        if model is None:
            return run_chat(assemble(config, plugin_manager=pm, program=program), config.generation, args)
        return run_chat(model.runner, config.generation, args, renderer=model.renderer)
    return _cmd_run(pm, args, parser)


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
    from mmcore.speculative.settings import speculative_overrides

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
    from mmcore.assemble import load_config, parse_assignments, with_overrides
    from mmcore.chat_model import AUTO

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
    from mmcore import constants as C
    from mmcore.chat_model import AUTO, build_chat_model
    from mmcore.program import Program

    program = Program(config.program, data_path=config.data_path)
    if not program.has_method(C.TEXT_DECODER):
        return None, program
    adapter = config.adapter if config.adapter is not None else AUTO
    return build_chat_model(dataclasses.replace(config, adapter=adapter), plugin_manager=pm, program=program), program


def _cmd_run(pm: PluginManager, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from mmcore.adapters import PromptRenderer
    from mmcore.assemble import assemble
    from mmcore.runner import TextLLMRunner

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


def _image_size(text: str) -> tuple[int, int]:
    """`--image-size WxH` (a usage error otherwise)."""
    from mmcore.image_plan import parse_image_size

    try:
        return parse_image_size(text)
    except MMCoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_inspect(pm: PluginManager, args: argparse.Namespace) -> int:
    from mmcore.chat_model import AUTO
    from mmcore.inspection import format_report, inspect_program

    if args.adapter and args.adapter != AUTO:
        pm.adapter_registry().get(args.adapter)
    report = inspect_program(
        args.program,
        tokenizer=args.tokenizer,
        adapter=args.adapter,
        plugin_manager=pm,
        data_path=args.data_path,
        image_sizes=args.image_size,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _cmd_demo(pm: PluginManager, args: argparse.Namespace) -> int:
    from mmcore.demo import DEMO_CONFIG, DemoRequest, demo_inputs, demo_runner, is_built, sample_audio, sample_image

    if args.image is None and args.audio is None:
        request = DemoRequest(sample_image(), sample_audio(), args.text)
    else:
        request = DemoRequest(args.image, args.audio, args.text)
    if is_built():
        runner = demo_runner(pm)
    else:
        runner = _export_with_progress(lambda progress: demo_runner(pm, progress=progress))
    return _generate_and_print(runner, demo_inputs(request, pm), DEMO_CONFIG, args)


def _export_with_progress(build: Callable[[ExportProgress], MultimodalRunner]) -> MultimodalRunner:
    """Run the demo model's first-use export with a progress bar on stderr (when it is a terminal)
    and a done line."""
    import time

    from tqdm import tqdm

    print("mmcore: exporting the demo model (first run only, under a minute)", file=sys.stderr)
    began = time.perf_counter()
    with tqdm(total=None, desc="loading the exporter", unit="step", file=sys.stderr, disable=None, leave=False,
              bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]") as bar:  # fmt: skip

        def progress(step: str, done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.set_description(step)  # redraws: steps are seconds apart

        runner = build(progress)
    took = time.perf_counter() - began
    print(f"mmcore: demo model ready in {took:.0f} s ({runner.program.path})", file=sys.stderr)
    return runner


def _generate_and_print(
    runner: TextLLMRunner | MultimodalRunner, inputs: list[Any], config: GenerationConfig, args: argparse.Namespace
) -> int:
    stream = None if args.json else _print_piece
    return _print_result(runner.generate(inputs, config, token_callback=stream), args)


def finish_reason(stop_reason: StopReason) -> str:
    """OpenAI's `finish_reason` for a `GenerationResult.stop_reason`."""
    return FINISH_REASONS[stop_reason]


def _print_result(result: GenerationResult, args: argparse.Namespace) -> int:
    if args.json:
        report: dict[str, Any] = {
            "text": result.text,
            "tokens": result.tokens,
            "finish_reason": finish_reason(result.stop_reason),
            "incomplete": result.incomplete,
            "stats": result.stats.to_dict(),
        }
        if result.logprobs is not None:
            report["logprobs"] = result.logprobs
        if "speculative" in result.stats.extra:
            report["speculative"] = result.stats.extra["speculative"]
        print(json.dumps(report))
    else:
        sys.stdout.write("\n")
        sys.stdout.flush()
        if result.incomplete:
            print("mmcore: the answer is incomplete (the token budget ran out first)", file=sys.stderr)
        if result.logprobs is not None:
            print(f"logprobs: {json.dumps(result.logprobs)}", file=sys.stderr)
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
