"""Gemma 4 as ExecuTorch's example exports it (`examples/models/gemma4/export_gemma4.py`).

One program: `speech_transform` (raw audio -> log-mel, inside the program), `audio_encoder`,
`vision_encoder` and `text_decoder(input_ids, input_pos, inputs_embeds)` (no `token_embedding`;
the core's `mmcore.joint_decoder`). Prompts follow the example's runner (`run_gemma4.py`): ``<bos>
<|turn>`` + "user\\n" + media + text + ``<turn|>`` + "\\n" + ``<|turn>`` + "model\\n", each text
piece tokenized on its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmcore import constants as C
from mmcore.adapters import (
    MediaSpan,
    ModelProfile,
    ModelSource,
    RenderedPrompt,
    RendererContext,
    check_media_limits,
    check_prompt_fits,
)
from mmcore.chat import Message, content_parts
from mmcore.encoder_cache import EncoderCache
from mmcore.errors import AdapterError, ConfigError, InvalidInputError
from mmcore.inputs import EmbeddingsInput, TokensInput
from mmcore.program import Program
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import int_option
from mmcore_adapters.gemma4_media import Gemma4Audio, Gemma4Image, encode, prepare_audio, preprocess_image
from mmcore_adapters.hf_files import token_id

__all__ = ["Gemma4Adapter", "Gemma4Renderer", "Gemma4Tokens"]

SUPPORTED_SOFT_TOKENS = (70, 140, 280, 560, 1120)
_TOKEN_STRINGS = {
    "turn": "<|turn>",
    "turn_end": "<turn|>",
    "boi": "<|image>",
    "eoi": "<image|>",
    "image": "<|image|>",
    "audio": "<|audio|>",
}
_CONFIG_KEYS = {"boi": "boi_token_id", "eoi": "eoi_token_id", "image": "image_token_id", "audio": "audio_token_id"}


@dataclass(frozen=True)
class Gemma4Tokens:
    """The special ids of a Gemma 4 vocabulary."""

    bos: int
    turn: int
    turn_end: int
    boi: int
    eoi: int
    image: int
    audio: int


class Gemma4Adapter:
    """ExecuTorch's Gemma 4 export: in-program speech transform, image patches with positions, and a
    decoder taking ids, positions and media embeddings together."""

    name = "gemma4"
    description = "Gemma 4 (ExecuTorch examples/models/gemma4): joint ids+embeddings decoder, in-program log-mel"
    fallback: ClassVar[bool] = False
    options: ClassVar[Mapping[str, str]] = {
        "max_soft_tokens": f"vision tokens per image, one of {SUPPORTED_SOFT_TOKENS} (default 280, as the example)",
        "max_items": "most media items one conversation may hold",
    }

    def detect(self, source: ModelSource) -> str | None:
        """A joint `text_decoder` (ids, positions, embeddings; no `token_embedding`) with Gemma 4's
        encoders, or `config.json` `model_type` gemma4."""
        from mmcore.joint_decoder import is_joint_decoder  # not at import: `mmcore plugins` stays light

        program = source.program
        if not is_joint_decoder(program):
            return None
        if source.model_type is not None and source.model_type.startswith("gemma4"):
            return (
                f"config.json model_type '{source.model_type}' and a text_decoder(input_ids, input_pos, inputs_embeds)"
            )
        if program.has_method("speech_transform") or program.has_method(C.VISION_ENCODER):
            return "text_decoder(input_ids, input_pos, inputs_embeds) with Gemma 4's encoders (ExecuTorch export)"
        return None

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        tokens = _tokens(source, tokenizer)
        soft = options.get("max_soft_tokens", _processor_soft_tokens(source))
        if soft not in SUPPORTED_SOFT_TOKENS:
            raise ConfigError(f"adapter option max_soft_tokens must be one of {SUPPORTED_SOFT_TOKENS}, got {soft!r}")
        _check_patch_bound(source.program, int(soft))
        limit = int_option(options, "max_items")
        limits = {"image": limit, "audio": limit} if limit is not None else {}
        program = source.program

        def make_renderer(context: RendererContext) -> Gemma4Renderer:
            return Gemma4Renderer(tokenizer, tokens, context, program, max_soft_tokens=int(soft), limits=limits)

        return ModelProfile(
            adapter=self.name,
            make_renderer=make_renderer,
            modality_settings={},
            stop_token_ids=frozenset({tokens.turn_end}),
            max_items=limits,
            media_token_id=tokens.image,
            notes=(
                "text_decoder takes input_ids, input_pos and inputs_embeds together (no token_embedding); the prompt "
                "is written in one call per chunk, as ExecuTorch's run_gemma4.py",
                "audio features come from the program's own speech_transform (no host log-mel)",
                f"images: aspect-preserving bicubic resize within {int(soft) * 9} patches of 16 px "
                f"({soft} soft tokens at most)",
            ),
        )


class Gemma4Renderer:
    """Renders a conversation in the layout of ExecuTorch's `run_gemma4.py`, each text piece
    tokenized on its own; media are encoded through the program's own methods."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        tokens: Gemma4Tokens,
        context: RendererContext,
        program: Program,
        *,
        max_soft_tokens: int,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.context = context
        self.program = program
        self.max_soft_tokens = max_soft_tokens
        self.limits = dict(limits or {})

    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> RenderedPrompt:
        """Token segments and media spans (media preprocessed, not yet encoded)."""
        if template_kwargs:
            raise InvalidInputError(
                f"template arguments {sorted(template_kwargs)} need a chat template; the Gemma 4 example's "
                "prompt format has none"
            )
        t = self.tokens
        parts: list[TokensInput | MediaSpan] = []
        ids: list[int] = [t.bos]

        def text(value: str) -> None:
            ids.extend(self.tokenizer.encode(value))

        for index, message in enumerate(messages):
            role = message.get("role")
            if role == "assistant" and "tokens" in message:  # a replayed answer, its stop tokens dropped
                replay = [int(i) for i in message["tokens"]]
                while replay and replay[-1] in (t.turn_end, *self.tokenizer.eos_ids):
                    replay.pop()
                ids.append(t.turn)
                text("model\n")
                ids.extend(replay)
                ids.append(t.turn_end)
                text("\n")
                continue
            if role not in ("system", "user", "assistant"):
                raise InvalidInputError(f"message {index}: unknown role {role!r}; use system, user or assistant")
            ids.append(t.turn)
            text("model\n" if role == "assistant" else f"{role}\n")
            for number, part in enumerate(content_parts(message, index)):
                kind = part["type"]
                if kind == "text":
                    text(str(part.get("text", "")))
                elif kind in ("image", "audio") and role == "user":
                    media = self._prepare(kind, part, f"message {index} part {number}")
                    if kind == "image":
                        ids.append(t.boi)
                    parts.append(TokensInput(ids))
                    placeholder = t.image if kind == "image" else t.audio
                    parts.append(MediaSpan(kind, media, media.tokens, placeholder))
                    ids = [t.eoi] if kind == "image" else []
                else:
                    raise InvalidInputError(
                        f"message {index} part {number}: Gemma 4 takes text, image and audio parts (media in user "
                        f"messages), not {kind!r} in a {role} message"
                    )
            ids.append(t.turn_end)
            text("\n")
        if add_generation_prompt:
            ids.append(t.turn)
            text("model\n")
        if ids:
            parts.append(TokensInput(ids))
        prompt = RenderedPrompt(tuple(p for p in parts if not (isinstance(p, TokensInput) and not p.ids)))
        check_media_limits(prompt, self.limits, program=self.program.path)
        return prompt

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """Ordered runner inputs: token segments and each media item's embeddings (valid rows)."""
        prompt = self.render_prompt(
            messages, add_generation_prompt=add_generation_prompt, template_kwargs=template_kwargs
        )
        check_prompt_fits(prompt, self.context.max_positions, program=self.program.path)
        out: list[Any] = []
        number = 0
        for part in prompt.parts:
            if isinstance(part, MediaSpan):
                out.append(self._encoded(part, f"{part.kind} item {number}"))
                number += 1
            else:
                out.append(part)
        return out

    def _encoded(self, span: MediaSpan, where: str) -> EmbeddingsInput:
        """The span's embeddings, through the bound runner's encoder cache when it has one (a replayed
        conversation re-renders its media every turn)."""
        runner = getattr(self.context.encoder, "runner", None)
        cache: EncoderCache | None = getattr(runner, "encoder_cache", None)
        media = span.item
        if cache is None:
            return encode(self.program, media, where=where)
        if isinstance(media, Gemma4Image):
            prepared = np.concatenate([media.pixel_values.ravel(), media.positions.ravel().astype(np.float32)])
        else:
            prepared = media.samples
        key = cache.key(f"{self.program.path}|gemma4-{span.kind}", prepared)
        hit = cache.get(key)
        if hit is not None:
            return hit
        began = time.perf_counter()
        embeddings = encode(self.program, media, where=where)
        cache.put(key, embeddings, time.perf_counter() - began)
        return embeddings

    def _prepare(self, kind: str, part: Mapping[str, Any], where: str) -> Gemma4Image | Gemma4Audio:
        method = C.VISION_ENCODER if kind == "image" else "speech_transform"
        if not self.program.has_method(method):
            raise InvalidInputError(f"{where}: this Gemma 4 program was exported without {kind} ({method} is absent)")
        value = part.get(kind)  # canonical part (mmcore.content.normalize_part: remote URLs refused there)
        if value is None:
            raise InvalidInputError(f"{where}: an {kind} part needs an '{kind}' value (a path, bytes or array)")
        try:
            if kind == "image":
                return preprocess_image(Path(value) if isinstance(value, str) else value, self.max_soft_tokens)
            if isinstance(value, str):
                return prepare_audio(Path(value))
            from mmcore_audio import AudioInput

            audio = value if isinstance(value, AudioInput) else AudioInput(value, sample_rate=part.get("sample_rate"))
            return prepare_audio(audio)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{where}: cannot read the {kind}: {exc}") from exc


def _tokens(source: ModelSource, tokenizer: Tokenizer) -> Gemma4Tokens:
    found: dict[str, int] = {}
    for key, text in _TOKEN_STRINGS.items():
        value = token_id(tokenizer, text)
        declared = source.config.get(_CONFIG_KEYS[key]) if key in _CONFIG_KEYS else None
        if value is None and isinstance(declared, int):
            value = declared
        if value is None:
            raise AdapterError(
                f"the gemma4 adapter's token {text!r} is not one token of this tokenizer and config.json does not "
                "name its id; use the tokenizer the model was exported with"
            )
        if isinstance(declared, int) and declared != value:
            raise AdapterError(
                f"config.json declares {_CONFIG_KEYS[key]} {declared} but the tokenizer encodes {text!r} as {value}; "
                "use the tokenizer the model was exported with"
            )
        found[key] = value
    bos = tokenizer.bos_id
    if bos is None:
        raise AdapterError("the gemma4 adapter needs a tokenizer with a BOS id (<bos>)")
    return Gemma4Tokens(bos=bos, **found)


def _processor_soft_tokens(source: ModelSource) -> int:
    for name in ("processor_config.json", "preprocessor_config.json"):
        data = source.json(name) or {}
        image = data.get("image_processor", data)
        if isinstance(image, Mapping) and isinstance(image.get("max_soft_tokens"), int):
            return int(image["max_soft_tokens"])
    return 280


def _check_patch_bound(program: Program, soft: int) -> None:
    spec = program.method_spec(C.VISION_ENCODER)
    if spec is None or not spec.inputs or spec.inputs[0] is None:
        return
    bound = spec.inputs[0].shape[1]
    if soft * 9 > bound:
        raise ConfigError(
            f"max_soft_tokens {soft} needs {soft * 9} patches but this vision_encoder takes at most {bound}; "
            f"pass a smaller max_soft_tokens (one of {[s for s in SUPPORTED_SOFT_TOKENS if s * 9 <= bound]})"
        )
