"""Hugging Face reference runs of the tiny families: processor output and greedy ``generate``."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mmcore.testing.hf._family import HFInputs, Message, transformers_api
from mmcore.testing.hf.build import FamilyName, HFModelDir, get_family

__all__ = ["hf_generate", "hf_inputs", "load_hf_model", "processor_segments"]


def _model_dir(model_dir: HFModelDir | Path) -> HFModelDir:
    """``model_dir`` itself, or the facts recorded in that folder."""
    return model_dir if isinstance(model_dir, HFModelDir) else HFModelDir.load(Path(model_dir))


def _check_family(family: str, model_dir: HFModelDir) -> None:
    """Raise unless ``model_dir`` was built for ``family``."""
    if get_family(family).name != model_dir.family:
        raise ValueError(f"{model_dir.path} holds a {model_dir.family} model, not {family}")


def hf_inputs(family: FamilyName | str, model_dir: HFModelDir | Path, messages: Sequence[Message]) -> HFInputs:
    """What the family's Hugging Face processor makes of a chat (generation prompt appended).

    Vision content items are ``{"type": "image", "image": PIL.Image}``; audio items are
    ``{"type": "audio", "audio": 16-kHz mono float array}``.
    """
    md = _model_dir(model_dir)
    _check_family(family, md)
    return get_family(family).prepare(md.path, messages)


@functools.lru_cache(maxsize=4)
def _load(family: str, path: str) -> Any:
    """Load a folder's model once per process."""
    transformers_api().utils.logging.disable_progress_bar()
    return get_family(family).load_model(Path(path))


def load_hf_model(family: FamilyName | str, model_dir: HFModelDir | Path) -> Any:
    """The Hugging Face model of a built folder (loaded once per process and folder)."""
    md = _model_dir(model_dir)
    _check_family(family, md)
    return _load(md.family, str(md.path))


def hf_generate(
    family: FamilyName | str,
    model_dir: HFModelDir | Path,
    messages_or_inputs: Sequence[Message] | HFInputs,
    max_new_tokens: int,
    *,
    stop_token_ids: Sequence[int] | None = None,
) -> list[int]:
    """Greedy new token ids of Hugging Face ``generate`` for a chat or for :func:`hf_inputs` output.

    Generation stops after ``stop_token_ids`` (default: the folder's never-rendered stop token, so
    runs are ``max_new_tokens`` long unless the model emits it); the stop token is included.
    """
    md = _model_dir(model_dir)
    inputs = (
        messages_or_inputs if isinstance(messages_or_inputs, HFInputs) else hf_inputs(family, md, messages_or_inputs)
    )
    model = load_hf_model(family, md)
    stops = list(stop_token_ids) if stop_token_ids is not None else [md.stop_token_id]
    out = model.generate(
        **inputs.model_kwargs,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=stops[0],
    )
    return [int(t) for t in out[0, len(inputs.input_ids) :]]


def processor_segments(inputs: HFInputs, model_dir: HFModelDir) -> Iterator[tuple[str, Any]]:
    """The processor's prompt cut at placeholder runs: ``("tokens", ids)`` runs and one media item
    per run (``("image", pixels)``, or ``("audio", features)`` holding every chunk of one clip)."""
    if inputs.media is None:
        raise ValueError("these processor inputs hold no media")
    ids, media_id = inputs.input_ids, model_dir.media_token_id
    start = item = i = 0
    while i < len(ids):
        if ids[i] != media_id:
            i += 1
            continue
        if i > start:
            yield "tokens", ids[start:i]
        end = i
        while end < len(ids) and ids[end] == media_id:
            end += 1
        if model_dir.modality == "vision":
            yield "image", inputs.media[item]
            item += 1
        else:
            n_chunks = (end - i) // model_dir.tokens_per_item
            yield "audio", inputs.media[item : item + n_chunks]
            item += n_chunks
        start = i = end
    if start < len(ids):
        yield "tokens", ids[start:]
