"""`mmcore inspect`: what a program declares and how mmcore would run it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmcore import constants as C
from mmcore.adapters import ModelSource, RendererContext, detect_adapter
from mmcore.errors import MMCoreError
from mmcore.generation_defaults import read_generation_defaults
from mmcore.plugins import PluginManager, get_plugin_manager
from mmcore.program import Program, TensorSpec

__all__ = ["inspect_program", "format_report"]


def inspect_program(
    path: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | None = None,
    adapter: str | None = None,
    plugin_manager: PluginManager | None = None,
    data_path: str | os.PathLike[str] | None = None,
    image_sizes: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    """A JSON-serialisable report: methods (dtypes, shapes), metadata constants, the adapter that
    runs the program (detected unless named) with its placeholder tokens per media item, and the
    context budget. Each ``(width, height)`` of `image_sizes` adds an `ImagePlan` (encoder calls,
    placeholder and prompt tokens of one such image) under ``adapter.image_plans``. Problems with
    the tokenizer or adapter are reported, not raised."""
    pm = plugin_manager or get_plugin_manager()
    program = Program(path, data_path=data_path)
    constants = sorted(program.metadata_names)
    methods = {
        name: {
            "inputs": [_spec(s) for s in program.method_spec(name).inputs],
            "outputs": [_spec(s) for s in program.method_spec(name).outputs],
        }
        for name in sorted(program.method_names - program.metadata_names)
    }
    metadata = {name: _json_value(program.constant(name)) for name in constants}
    max_seq = metadata.get(C.GET_MAX_SEQ_LEN)
    if max_seq is None:  # ExecuTorch's Gemma 4 export has no metadata methods: its decoder's bound
        from mmcore.joint_decoder import joint_decoder_bound

        max_seq = joint_decoder_bound(program)
    context = metadata.get(C.GET_MAX_CONTEXT_LEN, max_seq)
    report: dict[str, Any] = {
        "program": str(program.path),
        "size_bytes": program.path.stat().st_size,
        "methods": methods,
        "metadata": metadata,
        "context": {"max_context_len": context, "max_seq_len": max_seq, "per_call": _per_call(program, max_seq)},
        "decoder_position_input": _position_form(program),
        "execution": _execution(program),
        "kernels": _kernels(program),
        "speculative": _speculative(program, context),
    }
    tokenizer_path = Path(tokenizer) if tokenizer is not None else program.path.parent
    report["adapter"] = _adapter_report(program, tokenizer_path, adapter, pm, context, image_sizes)
    report["generation_defaults"] = _generation_defaults(program.path.parent)
    return report


def _generation_defaults(folder: Path) -> dict[str, Any] | None:
    """What the model's ``generation_config.json`` sets (None without one; a problem is reported)."""
    try:
        defaults = read_generation_defaults(folder)
    except MMCoreError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return defaults.to_json() if defaults is not None else None


def _adapter_report(
    program: Program,
    tokenizer_path: Path,
    name: str | None,
    pm: PluginManager,
    context: Any,
    image_sizes: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    from mmcore.tokenizer import load_tokenizer

    if not program.has_method(C.TEXT_DECODER):
        return {"name": None, "reason": "text-only program: no adapter (runs with TextLLMRunner)"}
    source = ModelSource(program, tokenizer_path=tokenizer_path)
    registry = pm.adapter_registry()
    out: dict[str, Any] = {"installed": registry.names()}
    try:
        if name is None or name == "auto":
            detection = detect_adapter(source, registry)
            out.update(name=detection.adapter.name, reason=detection.reason, candidates=dict(detection.candidates))
        else:
            out.update(name=registry.get(name).name, reason="named on the command line")
        chosen = registry.get(out["name"])
        out["options"] = dict(chosen.options)
        tokenizer = load_tokenizer(tokenizer_path, plugin_manager=pm)
        profile = chosen.configure(source, tokenizer, {})
    except MMCoreError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["tokens_per_item"] = dict(profile.tokens_per_item)
    out["max_items"] = dict(profile.max_items)
    out["stop_token_ids"] = sorted(profile.stop_token_ids)
    out["modality_settings"] = {k: _json_value(dict(v)) for k, v in profile.modality_settings.items()}
    out["notes"] = list(profile.notes)
    if isinstance(context, int):
        out["items_that_fit"] = {kind: (context - 1) // n for kind, n in profile.tokens_per_item.items() if n > 0}
    if image_sizes:
        renderer = profile.make_renderer(RendererContext(pm.modality_registry()))
        limits = (profile.tokens_per_item.get("image"), profile.max_items.get("image"))
        out["image_plans"] = _image_plans(renderer, image_sizes, context, *limits)
    return out


def _image_plans(
    renderer: Any, sizes: Sequence[tuple[int, int]], context: Any, per_image: int | None, max_images: int | None
) -> list[dict[str, Any]]:
    """An `ImagePlan` per size (or its problem)."""
    from mmcore.image_plan import plan_image

    plans: list[dict[str, Any]] = []
    known = context if isinstance(context, int) else None
    for width, height in sizes:
        try:
            plan = plan_image(renderer, width, height, context=known, tokens_per_image=per_image, max_images=max_images)
        except MMCoreError as exc:
            plans.append({"width": width, "height": height, "error": f"{type(exc).__name__}: {exc}"})
        else:
            plans.append({**plan.to_json(), "summary": plan.describe()})
    return plans


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    lines = [f"program: {report['program']} ({report['size_bytes']} bytes)", "methods:"]
    for name, spec in report["methods"].items():
        ins = ", ".join(str(s) for s in spec["inputs"])
        outs = ", ".join(str(s) for s in spec["outputs"])
        lines.append(f"  {name}({ins}) -> {outs}")
    lines.append("metadata:")
    lines += [f"  {k} = {v}" for k, v in report["metadata"].items()]
    ctx = report["context"]
    lines.append(f"context: {ctx['max_context_len']} positions, at most {ctx['per_call']} per decoder call")
    lines.append(f"decoder position input: {report['decoder_position_input']}")
    lines.append(f"execution: {report['execution']}")
    lines.append(f"kernel libraries: {report['kernels']}")
    lines.append(f"speculative decoding: {report['speculative']}")
    adapter = report["adapter"]
    lines.append(f"adapter: {adapter.get('name')} ({adapter.get('reason', '')})")
    if "error" in adapter:
        lines.append(f"  problem: {adapter['error']}")
    for kind, n in adapter.get("tokens_per_item", {}).items():
        unit = "audio window" if kind == "audio" else kind
        fit = adapter.get("items_that_fit", {}).get(kind)
        lines.append(f"  {n} placeholder tokens per {unit}" + (f" ({fit} fit the context)" if fit is not None else ""))
    for kind, n in adapter.get("max_items", {}).items():
        lines.append(f"  at most {n} {kind} item(s) per conversation")
    if adapter.get("stop_token_ids"):
        lines.append(f"  extra stop token ids: {adapter['stop_token_ids']}")
    for plan in adapter.get("image_plans", []):
        problem = f"{plan['width']}x{plan['height']}: problem: {plan.get('error')}"
        lines.append(f"  image {problem if 'error' in plan else plan['summary']}")
    lines += [f"  note: {n}" for n in adapter.get("notes", [])]
    if adapter.get("installed"):
        lines.append(f"  installed adapters: {', '.join(adapter['installed'])}")
    defaults = report.get("generation_defaults")
    if defaults is not None and "error" in defaults:
        lines.append(f"generation defaults: problem: {defaults['error']}")
    elif defaults is not None:
        settings = ", ".join(f"{k}={v}" for k, v in defaults["settings"].items())
        lines.append(f"generation defaults ({defaults['file']}): {settings}")
        if defaults["eos_token_ids"]:
            lines.append(f"  eos_token_id: {defaults['eos_token_ids']}")
    return "\n".join(lines)


def _kernels(program: Program) -> str:
    """Which of the executorch wheel's kernel libraries the program's operators come from."""
    from mmcore import kernels

    needs = kernels.program_needs(program.path)
    llama = {op for op in needs.operators if op.startswith("llama::")}
    own = program.native and kernels.own_kernels_enabled() and llama <= kernels.OWN_KERNELS
    used = [
        "mmcore's LLM custom-op kernels"
        if lib.needs_torch and own
        else f"{lib.name}{' (links torch)' if lib.needs_torch else ''}"
        for lib in kernels.LIBRARIES
        if any(op.startswith(lib.namespaces) for op in needs.operators)
    ]
    backends = f"; backends: {', '.join(sorted(needs.backends))}" if needs.backends else ""
    return f"{', '.join(used) or 'none (runtime built-ins only)'}{backends} ({len(needs.operators)} operators)"


def _execution(program: Program) -> str:
    from mmcore import native

    if program.native:
        from mmcore.joint_decoder import is_joint_decoder

        if is_joint_decoder(program):  # ids and embeddings each step: decoded from Python
            return native.status().describe()
        return f"{native.status().describe()}; greedy decoding below Python"
    if os.environ.get("MMCORE_NATIVE", "1") == "0":
        return "ExecuTorch's Python bindings (MMCORE_NATIVE=0)"
    return native.status().describe()


def _speculative(program: Program, context: Any) -> str:
    from mmcore.speculative.support import speculation_unsupported

    decoder = next((m for m in (C.TEXT_DECODER, "decode", C.FORWARD, C.PREFILL) if program.has_method(m)), None)
    if decoder is None or not isinstance(context, int):
        return "off: no decoder method or context length"
    reason = speculation_unsupported(program, decoder, context)
    if reason:
        return f"off: {reason}"
    return "available (--speculative ngram|draft): the decoder returns every row's logits"


def _position_form(program: Program) -> str:
    if not program.has_method(C.TEXT_DECODER):
        return "n/a"
    inputs = program.method_spec(C.TEXT_DECODER).inputs
    spec = inputs[1] if len(inputs) > 1 else None
    if spec is None:
        return "none"
    return "cache_position [T]" if spec.shape and spec.shape[0] > 1 else "start position [1]"


def _per_call(program: Program, max_seq: Any) -> int | None:
    """Rows one decoder call takes: `get_max_seq_len`, capped by the decoder's sequence bound."""
    decoder = next((m for m in (C.TEXT_DECODER, C.FORWARD) if program.has_method(m)), None)
    if decoder is None or not isinstance(max_seq, int):
        return max_seq if isinstance(max_seq, int) else None
    first = program.method_spec(decoder).inputs[0]
    bound = first.shape[1] if first is not None and first.rank >= 2 else max_seq
    return min(max_seq, bound)


def _spec(spec: TensorSpec | None) -> str:
    return spec.describe() if spec is not None else "value"


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
