"""The runners: `TextLLMRunner` (text-only programs) and `MultimodalRunner` (ordered mixed inputs)."""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from mmcore import constants as C
from mmcore.config import GenerationConfig
from mmcore.decoder import MultimodalDecoderRunner, TextDecoderRunner
from mmcore.encoder_cache import EncoderCache
from mmcore.errors import ContextOverflowError, InvalidInputError, RunnerStateError, TokenizerError
from mmcore.generate import TextTokenGenerator
from mmcore.inputs import EmbeddingsInput, TokensInput
from mmcore.joint_decoder import JointDecoderRunner, is_joint_decoder
from mmcore.metadata import LLMMetadata
from mmcore.plugins import PluginManager, get_plugin_manager
from mmcore.prefill import MultimodalPrefiller, Segment, TextPrefiller
from mmcore.program import Program
from mmcore.sampling import Sampler
from mmcore.speculative.ngram import NO_TOKEN
from mmcore.speculative.support import RunnerSpeculation
from mmcore.stats import Stats, now_ms
from mmcore.streaming import TextStreamer
from mmcore.tokenizer import Tokenizer, load_tokenizer

if TYPE_CHECKING:
    from mmcore.structured import ConstraintCompiler, TokenMask

__all__ = [
    "IRunner",
    "TextLLMRunner",
    "MultimodalRunner",
    "GenerationResult",
    "Piece",
    "TokenCallback",
    "PieceCallback",
    "StatsCallback",
]

logger = logging.getLogger(__name__)

TokenCallback = Callable[[str], None]
PieceCallback = Callable[["Piece"], None]
StatsCallback = Callable[[Stats], None]
StopReason = Literal["eos", "length", "stop_string", "stopped"]
PathLike = str | os.PathLike[str]


@dataclass
class GenerationResult:
    """What one `generate` call produced.

    Fields:
        text: the generated text (special tokens left out; cut before a stop string).
        tokens: every generated token id, the first (prefill) token and a final EOS included.
        stats: the call's statistics.
        stop_reason: why generation ended.
        incomplete: a constrained answer (`response_format`) ended before the constraint was
            complete (the token budget ran out, a stop string or `stop()`); its text does not parse.
        logprobs: with `config.logprobs`, each token's log-probability (see `Sampler`).
        top_logprobs: with `config.top_logprobs` = k, each token's k most likely alternatives as
            (id, log-probability), most likely first.
    """

    text: str
    tokens: list[int]
    stats: Stats
    stop_reason: StopReason = "length"
    prompt_tokens: int = 0
    logprobs: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    incomplete: bool = False
    top_logprobs: list[list[tuple[int, float]]] | None = None


@dataclass(frozen=True)
class Piece:
    """One step of a stream: the text it made safe to show (may be empty), the token id (None for
    text released at the end), its log-probability and top alternatives when asked for."""

    text: str
    token: int | None
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


class IRunner(abc.ABC):
    """ExecuTorch's runner interface."""

    @abc.abstractmethod
    def is_loaded(self) -> bool: ...

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    def generate(
        self,
        prompt: Any,
        config: GenerationConfig | None = None,
        token_callback: TokenCallback | None = None,
        stats_callback: StatsCallback | None = None,
        *,
        piece_callback: PieceCallback | None = None,
    ) -> GenerationResult: ...

    @abc.abstractmethod
    def prefill(self, prompt: Any, num_bos: int = 0, num_eos: int = 0) -> int: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def reset(self) -> None: ...


class _RunnerBase(IRunner):
    """Position tracking, rollback, budget checks and the generate skeleton shared by both runners.

    Positions continue across `generate` calls as in ExecuTorch (after a turn the KV cache holds
    everything but the last emitted token). Unlike ExecuTorch, a call that fails rolls the position
    back, so the next call behaves as if the failed one had never happened.
    """

    def __init__(
        self, program: Program | PathLike, tokenizer: Tokenizer | PathLike | None, plugin_manager: PluginManager | None
    ) -> None:
        self.plugin_manager = plugin_manager
        self.program = program if isinstance(program, Program) else Program(program)
        self.tokenizer: Tokenizer = self._resolve_tokenizer(tokenizer)
        self.metadata = LLMMetadata.from_program(self.program, self.tokenizer)
        self.stats = Stats()
        self.generation_config = GenerationConfig()  # used when generate() is given no config
        self.pos = 0
        self._pending_logits: npt.NDArray[Any] | None = None
        self._loaded = False
        self._busy = threading.Lock()
        self._generator: TextTokenGenerator | None = None
        self._constraints: ConstraintCompiler | None = None  # built on the first constrained request
        self.decoder: TextDecoderRunner | MultimodalDecoderRunner | JointDecoderRunner  # set by `_load_methods`
        self._step_decoder: TextDecoderRunner | MultimodalDecoderRunner | JointDecoderRunner  # one token a step
        # The ids the KV cache holds, by position (NO_TOKEN for embedding rows), for speculation.
        self._ids: list[int] = []
        self._speculation: RunnerSpeculation | None = None

    # -- IRunner -------------------------------------------------------------------------------
    def is_loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load the tokenizer, metadata and methods (idempotent)."""
        if self._loaded:
            return
        self.stats.model_load_start_ms = now_ms()
        self._load_methods()
        self._check_vocab()
        self.stats.model_load_end_ms = now_ms()
        self._loaded = True

    def stop(self) -> None:
        """End the running `generate` within one decode step (callable from another thread)."""
        if self._generator is not None:
            self._generator.stop()

    def reset(self) -> None:
        """Start a new conversation at position 0 (stale cache rows are masked by position)."""
        self.pos = 0
        self._ids = []
        self._pending_logits = None
        self.stats.reset()

    # -- generate ------------------------------------------------------------------------------
    def generate(
        self,
        prompt: Any = (),
        config: GenerationConfig | None = None,
        token_callback: TokenCallback | None = None,
        stats_callback: StatsCallback | None = None,
        *,
        piece_callback: PieceCallback | None = None,
    ) -> GenerationResult:
        """Prefill `prompt`, then generate; an empty prompt continues from what `prefill` left.

        `token_callback(text)` gets streamed text (whole characters only, the echo first);
        `piece_callback(piece)` gets one `Piece` per generated token. A failure rolls back.
        """
        config = config if config is not None else self.generation_config
        with self._rollback_on_failure():
            start_pos, pending = self.pos, self._pending_logits
            self.load()
            assert self._generator is not None
            self._generator.clear_stop()
            stats = self.stats
            stats.reset()
            stats.inference_start_ms = now_ms()
            began = time.perf_counter()
            prepared, prompt_len, echo_texts = self._prepare_request(prompt, config)
            if prompt_len == 0 and pending is None:
                raise RunnerStateError(
                    "nothing to generate from: the request has no inputs and nothing was prefilled; "
                    "pass at least one input (or call prefill() first)"
                )
            self._check_budget(start_pos, prompt_len, config)
            mask = self._token_mask(config)  # a bad or unsatisfiable response_format fails before decoding
            if config.echo and token_callback is not None:
                for text in echo_texts:
                    token_callback(text)
            # Everything the first token needs is set up before the prefill, so it follows at once.
            sampler, streamer = Sampler.from_config(config, mask=mask), TextStreamer(self.tokenizer, stop=config.stop)
            logits = self._write(prepared, start_pos) if prompt_len else pending
            assert logits is not None
            if prompt_len:
                self._record_ids(start_pos, self._position_ids(prepared))
            self._pending_logits = None
            self.pos = start_pos + prompt_len
            stats.prompt_eval_end_ms = now_ms()
            stats.prefill_time_s = time.perf_counter() - began
            stats.num_prompt_tokens = prompt_len
            result = self._decode(logits, config, sampler, streamer, token_callback, piece_callback)
            result.prompt_tokens = prompt_len
            result.incomplete = mask is not None and not mask.complete
            stats.inference_end_ms = now_ms()
            stats.decode_time_s = time.perf_counter() - began - stats.prefill_time_s
            stats.finish()
        if stats_callback is not None and not config.warming:
            stats_callback(stats)
        return result

    def prefill(self, prompt: Any, num_bos: int = 0, num_eos: int = 0) -> int:
        """Write `prompt` into the KV cache without generating; returns the new position."""
        config = GenerationConfig(num_bos=num_bos, num_eos=num_eos)
        with self._rollback_on_failure():
            start_pos = self.pos
            self.load()
            prepared, prompt_len, _ = self._prepare_request(prompt, config)
            if prompt_len == 0:
                raise InvalidInputError("prefill got an empty input list (or prompt); pass at least one input")
            self._check_budget(start_pos, prompt_len, config)
            self._pending_logits = self._write(prepared, start_pos)
            self._record_ids(start_pos, self._position_ids(prepared))
            self.pos = start_pos + prompt_len
        return self.pos

    def _token_mask(self, config: GenerationConfig) -> TokenMask | None:
        """The mask of `config.response_format` for a new answer (None when unconstrained)."""
        if config.response_format is None:
            return None
        from mmcore.structured import ConstraintCompiler

        if self._constraints is None:
            self._constraints = ConstraintCompiler(self.tokenizer, self.metadata.eos_ids, self._logits_width())
        began = time.perf_counter()
        mask = self._constraints.compile(config.response_format).start()
        self.stats.extra["constraint_setup_s"] = time.perf_counter() - began
        return mask

    @contextlib.contextmanager
    def _rollback_on_failure(self) -> Iterator[None]:
        """One call at a time; if the call fails, the position and any pending prefill are restored."""
        if not self._busy.acquire(blocking=False):
            raise RunnerStateError("generate is already running on this runner; runners serve one call at a time")
        saved = self.pos, self._pending_logits
        try:
            yield
        except BaseException:
            self.pos, self._pending_logits = saved
            raise
        finally:
            self._busy.release()

    def stream(self, prompt: Any = (), config: GenerationConfig | None = None) -> Iterator[Piece]:
        """`generate` as an iterator of pieces; closing the iterator early stops generation."""
        return _stream(self, prompt, config)

    def astream(self, prompt: Any = (), config: GenerationConfig | None = None) -> AsyncIterator[Piece]:
        """`generate` as an async iterator of pieces; cancelling the consuming task stops generation."""
        return _astream(self, prompt, config)

    @abc.abstractmethod
    def _prepare_request(self, prompt: Any, config: GenerationConfig) -> tuple[Any, int, list[str]]:
        """Encode/preprocess a request: (prepared segments, prompt positions, texts to echo)."""

    @abc.abstractmethod
    def _write(self, prepared: Any, start_pos: int) -> npt.NDArray[Any]:
        """Prefill prepared segments at `start_pos`; logits `[V]` after the last one."""

    @abc.abstractmethod
    def _position_ids(self, prepared: Any) -> list[int]:
        """The id at each position a prepared request fills (NO_TOKEN for embedding rows)."""

    def _record_ids(self, start_pos: int, ids: Sequence[int]) -> None:
        del self._ids[start_pos:]
        self._ids += [NO_TOKEN] * (start_pos - len(self._ids))
        self._ids += ids

    def _speculation_for(self, config: GenerationConfig, first: int, mask: TokenMask | None) -> Any:
        """The call's `Speculation` (None when off; why it is off goes to `stats.extra`); `mask`: the
        constrained answer's, after `first`."""
        if config.speculative is None or not config.speculative.enabled:
            return None
        if isinstance(self._step_decoder, JointDecoderRunner):
            off = "this text_decoder returns the last row's logits only, so drafts cannot be verified"
            self.stats.extra["speculative"] = {"method": config.speculative.method, "off": off}
            return None
        if self._speculation is None:
            self._speculation = RunnerSpeculation(self.program, self._step_decoder, self.metadata.max_context_len)
        history = [*self._ids[: self.pos], first]
        history += [NO_TOKEN] * (self.pos + 1 - len(history))
        return self._speculation.for_call(config, history, self.stats.extra, mask)

    def _decode(
        self,
        logits: npt.NDArray[Any],
        config: GenerationConfig,
        sampler: Sampler,
        streamer: TextStreamer,
        token_callback: TokenCallback | None,
        piece_callback: PieceCallback | None = None,
    ) -> GenerationResult:
        assert self._generator is not None
        stats = self.stats
        budget = config.resolve_max_new_tokens(self.metadata.max_context_len, self.pos)
        eos_ids = self.metadata.eos_ids
        logprobs: list[float] = []
        tops: list[list[tuple[int, float]]] = []
        want_top = config.top_logprobs > 0
        began = time.perf_counter()
        first = sampler(logits, argmax=self.decoder.known_argmax(logits))
        stats.sampling_time_s += time.perf_counter() - began
        stats.first_token_ms = now_ms()

        def on_token(token: int) -> bool:
            text = streamer.push(token)
            if text and token_callback is not None:
                token_callback(text)
            if config.logprobs:
                logprobs.append(sampler.last_logprob if sampler.last_logprob is not None else float("nan"))
                if want_top:
                    tops.append(sampler.last_top or [])
            if piece_callback is not None:
                piece_callback(
                    Piece(text, token, logprobs[-1] if config.logprobs else None, tops[-1] if want_top else None)
                )
            return streamer.stopped

        tokens = [first]
        stop_now = on_token(first) or (not config.ignore_eos and first in eos_ids)
        if not stop_now and budget > 1:
            speculation = self._speculation_for(config, first, sampler.mask)
            tokens += self._generator.generate(
                first, self.pos, budget - 1, sampler, ignore_eos=config.ignore_eos, on_token=on_token,
                speculation=speculation,
            )  # fmt: skip
            if speculation is not None and self._speculation is not None:
                self._speculation.report(speculation, stats.extra)
        self._record_ids(self.pos, tokens[:-1])
        # The last emitted token is never fed to the decoder (as ExecuTorch).
        self.pos += len(tokens) - 1
        tail = streamer.flush()
        if tail and token_callback is not None:
            token_callback(tail)
        if tail and piece_callback is not None:
            piece_callback(Piece(tail, None, None))
        stats.num_generated_tokens = len(tokens) - 1
        reason: StopReason
        if streamer.stopped:
            reason = "stop_string"
        elif not config.ignore_eos and tokens[-1] in eos_ids:
            reason = "eos"
        elif self._generator.stop_requested:
            reason = "stopped"
        else:
            reason = "length"
        result = GenerationResult(text=streamer.text, tokens=tokens, stats=stats, stop_reason=reason)
        result.logprobs = logprobs if config.logprobs else None
        result.top_logprobs = tops if want_top else None
        return result

    def _check_budget(self, start_pos: int, prompt_len: int, config: GenerationConfig) -> None:
        context = self.metadata.max_context_len
        occupied = start_pos + prompt_len
        if occupied >= context:
            raise ContextOverflowError(
                f"the prompt needs {prompt_len} positions after the {start_pos} already used, "
                f"{occupied} in all, but the program's context holds {context} (leaving none to "
                "generate); shorten the prompt or call reset() to start a new conversation"
            )
        if config.resolve_max_new_tokens(context, occupied) <= 0:
            raise ContextOverflowError(
                f"seq_len={config.seq_len} leaves no room to generate after {occupied} prompt positions; "
                "raise seq_len or shorten the prompt"
            )

    def _check_vocab(self) -> None:
        width = self._logits_width()
        if self.tokenizer.vocab_size > width:
            raise TokenizerError(
                f"the tokenizer has {self.tokenizer.vocab_size} ids but the program's logits cover "
                f"only {width}; this tokenizer does not belong to this program (use the tokenizer "
                "the model was exported with)"
            )

    def _resolve_tokenizer(self, source: Tokenizer | PathLike | None) -> Tokenizer:
        if source is None:
            raise TokenizerError("this runner needs a tokenizer: pass a tokenizer object or the path of its files")
        if isinstance(source, (str, os.PathLike)):
            return load_tokenizer(source, plugin_manager=self._plugins())
        if not isinstance(source, Tokenizer):
            raise TokenizerError(f"{type(source).__name__} is not a tokenizer (see mmcore.Tokenizer)")
        return source

    def _plugins(self) -> PluginManager:
        if self.plugin_manager is None:
            self.plugin_manager = get_plugin_manager()
        return self.plugin_manager

    @abc.abstractmethod
    def _load_methods(self) -> None: ...

    @abc.abstractmethod
    def _logits_width(self) -> int: ...


class TextLLMRunner(_RunnerBase):
    """Runs a text-only program (`forward(tokens, positions)`), as ExecuTorch's `TextLLMRunner`."""

    def __init__(
        self,
        program: Program | PathLike,
        tokenizer: Tokenizer | PathLike,
        *,
        method_name: str = C.FORWARD,
        plugin_manager: PluginManager | None = None,
    ) -> None:
        super().__init__(program, tokenizer, plugin_manager)
        if method_name == C.FORWARD and not self.program.has_method(C.FORWARD) and self.program.has_method(C.PREFILL):
            method_name = C.PREFILL
        self.program.require(method_name)
        self.method_name = method_name
        self._history: list[int] = []  # the whole sequence, for programs without a KV cache

    def _load_methods(self) -> None:
        self.decoder = TextDecoderRunner(self.program, self.method_name, self.stats)
        step_decoder = self.decoder
        if self.program.has_method("decode") and self.method_name != "decode":
            step_decoder = TextDecoderRunner(self.program, "decode", self.stats)
        self.prefiller = TextPrefiller(self.decoder, self.metadata.max_seq_len)
        self._step_decoder = step_decoder
        if self.decoder.use_kv_cache:
            step, loop = step_decoder.step_token, step_decoder.greedy_loop()
        else:
            step, loop = self._step_without_cache, None
        self._generator = TextTokenGenerator(step, self.metadata.eos_ids, self.stats, greedy_loop=loop)

    def _logits_width(self) -> int:
        return self.decoder.vocab_width

    def _prepare_request(self, prompt: Any, config: GenerationConfig) -> tuple[Any, int, list[str]]:
        parts = self._as_parts(prompt)
        tokens = self._encode(parts, config.num_bos, config.num_eos) if parts else []
        return tokens, len(tokens), [p for p in parts if isinstance(p, str)]

    def reset(self) -> None:
        super().reset()
        self._history = []

    def _as_parts(self, prompt: Any) -> list[str | TokensInput]:
        items = [prompt] if isinstance(prompt, (str, TokensInput)) else prompt
        if not isinstance(items, Sequence) or not all(isinstance(p, (str, TokensInput)) for p in items):
            raise InvalidInputError(
                f"TextLLMRunner takes a str, a TokensInput or a list of them, got {type(prompt).__name__}"
            )
        return [p for p in items if not (isinstance(p, str) and not p)]

    def _encode(self, parts: Sequence[str | TokensInput], num_bos: int, num_eos: int) -> list[int]:
        """Token ids of the parts in order; BOS/EOS go with a first text at the conversation start."""
        tokens: list[int] = []
        for index, part in enumerate(parts):
            if isinstance(part, TokensInput):
                ids = list(part.ids)
            else:
                first = index == 0 and self.pos == 0
                ids = self.tokenizer.encode(part, bos=num_bos if first else 0, eos=num_eos if first else 0)
            if not ids:
                raise InvalidInputError(f"prompt part {index} ({_preview(part)}) encoded to no tokens")
            tokens += ids
        width = self.decoder.vocab_width
        bad = [i for i in tokens if not 0 <= i < width]
        if bad:
            raise InvalidInputError(f"token ids outside the model's vocabulary [0, {width}): {bad[:8]}")
        return tokens

    def _write(self, tokens: list[int], start_pos: int) -> npt.NDArray[Any]:
        if self.decoder.use_kv_cache:
            return self.prefiller.prefill(tokens, start_pos)
        self._history = self._history[:start_pos] + tokens
        return self._step_full()

    def _position_ids(self, prepared: list[int]) -> list[int]:
        return list(prepared)

    def _step_without_cache(self, token: int, pos: int) -> npt.NDArray[Any]:
        self._history = [*self._history[:pos], token]
        return self._step_full()

    def _step_full(self) -> npt.NDArray[Any]:
        if len(self._history) > self.decoder.max_tokens_per_call:
            raise ContextOverflowError(
                f"this program has no KV cache and takes at most {self.decoder.max_tokens_per_call} "
                f"tokens per call; the sequence has {len(self._history)}"
            )
        return self.decoder.step(np.array([self._history], dtype=np.int64), 0).copy()  # [V]


class MultimodalRunner(_RunnerBase):
    """Runs a multimodal program (`token_embedding`, `text_decoder`, encoders) on ordered inputs.

    Inputs are token ids (`TokensInput`), embeddings (`EmbeddingsInput`) or anything an installed
    modality plugin handles (`str` with mmcore-text, images with mmcore-image, ...).
    """

    def __init__(
        self,
        program: Program | PathLike,
        tokenizer: Tokenizer | PathLike,
        *,
        plugin_manager: PluginManager | None = None,
        modality_settings: Mapping[str, Mapping[str, Any]] | None = None,
        encoder_cache: EncoderCache | bool | None = True,
    ) -> None:
        super().__init__(program, tokenizer, plugin_manager)
        if not is_joint_decoder(self.program):
            self.program.require(C.TOKEN_EMBEDDING, C.TEXT_DECODER)
        self._media_token_id: int | None = None
        self.modality_settings = dict(modality_settings or {})
        self.encoder_cache: EncoderCache | None = (
            EncoderCache()
            if encoder_cache is True
            else encoder_cache
            if isinstance(encoder_cache, EncoderCache)
            else None
        )

    @property
    def media_token_id(self) -> int | None:
        """The id a joint decoder (ids + embeddings, `mmcore.joint_decoder`) reads at media rows."""
        return self._media_token_id

    @media_token_id.setter
    def media_token_id(self, value: int | None) -> None:
        self._media_token_id = value
        if self._loaded and isinstance(self.decoder, JointDecoderRunner):
            self.decoder.media_token_id = value

    def _load_methods(self) -> None:
        if is_joint_decoder(self.program):
            self.decoder = JointDecoderRunner(self.program, self.stats, self.media_token_id)
        else:
            self.decoder = MultimodalDecoderRunner(self.program, self.stats)
        self.prefiller = MultimodalPrefiller(
            self.program,
            self.decoder,
            self._plugins().modality_registry(),
            self.tokenizer,
            max_seq_len=self.metadata.max_seq_len,
            settings=self.modality_settings,
            encoder_cache=self.encoder_cache,
        )
        self._generator = TextTokenGenerator(
            self.decoder.step_token, self.metadata.eos_ids, self.stats, greedy_loop=self.decoder.greedy_loop()
        )
        self._step_decoder = self.decoder

    def _logits_width(self) -> int:
        return self.decoder.vocab_width

    def _prepare_request(self, prompt: Any, config: GenerationConfig) -> tuple[Any, int, list[str]]:
        inputs = self._as_inputs(prompt)
        segments = self.prefiller.prepare(
            inputs, start_pos=self.pos, num_bos=config.num_bos, num_eos=config.num_eos, bos_id=self.metadata.bos_id
        )
        self.stats.extra["encoder_cache_hits"] = self.prefiller.cache_hits
        self.stats.extra["encoder_cache_saved_s"] = self.prefiller.cache_saved_s
        return segments, _segments_length(segments), [t for t in map(_echo_text, inputs) if t is not None]

    def _write(self, segments: list[Segment], start_pos: int) -> npt.NDArray[Any]:
        return self.prefiller.prefill(segments, start_pos)

    def _position_ids(self, segments: list[Segment]) -> list[int]:
        ids: list[int] = []
        for segment in segments:
            ids += list(segment.ids) if isinstance(segment, TokensInput) else [NO_TOKEN] * len(segment)
        return ids

    def _as_inputs(self, prompt: Sequence[Any] | str) -> list[Any]:
        if isinstance(prompt, str):
            return [prompt] if prompt else []
        if isinstance(prompt, (TokensInput, EmbeddingsInput)) or not isinstance(prompt, Sequence):
            raise InvalidInputError(
                f"MultimodalRunner takes a list of inputs, got {type(prompt).__name__}; wrap it: [input]"
            )
        return list(prompt)


def _preview(part: str | TokensInput) -> str:
    return repr(part[:40]) if isinstance(part, str) else f"TokensInput of {len(part)} ids"


def _segments_length(segments: Sequence[Segment]) -> int:
    return sum(len(s) for s in segments)


def _echo_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    text = getattr(item, "text", None)
    return text if isinstance(text, str) else None


_DONE = object()


def _stream(runner: _RunnerBase, prompt: Any, config: GenerationConfig | None) -> Iterator[Piece]:
    """Run `generate` on a worker thread and yield its pieces; the result's exception is re-raised."""
    pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            runner.generate(prompt, config, piece_callback=pieces.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            outcome.append(exc)
        finally:
            pieces.put(_DONE)

    worker = threading.Thread(target=work, name="mmcore-generate", daemon=True)
    worker.start()
    try:
        while (item := pieces.get()) is not _DONE:
            yield item
    finally:
        runner.stop()  # the consumer stopped early (no-op when generation already ended)
        worker.join()
    if outcome:
        raise outcome[0]


async def _astream(runner: _RunnerBase, prompt: Any, config: GenerationConfig | None) -> AsyncIterator[Piece]:
    """`generate` in a worker thread, its pieces delivered to the event loop."""
    import asyncio  # already imported by whoever runs the event loop

    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(piece: Any) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    def work() -> GenerationResult:
        try:
            return runner.generate(prompt, config, piece_callback=deliver)
        finally:
            deliver(_DONE)

    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        while (item := await pieces.get()) is not _DONE:
            yield item
        await task  # re-raise a generation error
    finally:
        if not task.done():
            runner.stop()  # cancelled or closed early: end generation within one step
            await asyncio.shield(task)
