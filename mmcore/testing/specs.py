"""Frozen, hashable descriptions of the tiny test programs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AudioEncoderSpec",
    "AudioKind",
    "Backend",
    "DecoderSpec",
    "ImageDtype",
    "LogitsForm",
    "METADATA_METHODS",
    "PositionForm",
    "ProgramKind",
    "ProgramSpec",
    "VisionEncoderSpec",
]

#: Bumped whenever model code or export settings change what a spec builds.
_BUILD_REVISION = 1

ImageDtype = Literal["float32", "uint8", "bfloat16"]
AudioKind = Literal["mel", "raw"]
ProgramKind = Literal["multimodal", "text"]
Backend = Literal["portable", "xnnpack"]
PositionForm = Literal["start", "cache_position"]
LogitsForm = Literal["last", "all"]

#: Constant metadata methods a program carries unless omitted.
METADATA_METHODS: tuple[str, ...] = (
    "get_max_seq_len",
    "get_max_context_len",
    "get_bos_id",
    "get_eos_ids",
    "get_vocab_size",
    "use_kv_cache",
    "enable_dynamic_shape",
    "use_sdpa_with_kv_cache",
)


def _digest(payload: Any) -> str:
    """Short stable hex digest of a JSON-serialisable payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class _Keyed:
    """Mixin giving a dataclass a stable content key."""

    def cache_key(self) -> str:
        """Stable key of this spec (same fields -> same key across runs and machines)."""
        assert dataclasses.is_dataclass(self)
        fields = dataclasses.asdict(self)
        # Fields added later count only when set, so programs cached before them keep their keys.
        for name, default in _LATER_FIELDS.items():
            if fields.get(name, default) == default:
                fields.pop(name, None)
        payload = {"type": type(self).__name__, "rev": _BUILD_REVISION, "fields": fields}
        return _digest(payload)


_LATER_FIELDS: dict[str, Any] = {"external_weights": False, "script": (), "sliding_window": 0, "ring_cache": False}


@dataclass(frozen=True)
class DecoderSpec(_Keyed):
    """A Llama-style decoder (RMSNorm, RoPE, SwiGLU, KV cache)."""

    vocab_size: int = 512
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 4
    ffn_dim: int = 172
    max_context_len: int = 128
    max_seq_len: int = 64
    seed: int = 0
    init_std: float = 0.2

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} heads of even size")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} must be a multiple of n_kv_heads {self.n_kv_heads}")
        if not 1 < self.max_seq_len <= self.max_context_len:
            raise ValueError(
                f"need 1 < max_seq_len <= max_context_len, got {self.max_seq_len} and {self.max_context_len}"
            )

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.dim // self.n_heads

    @classmethod
    def tiny(cls, vocab_size: int = 512) -> DecoderSpec:
        """About 0.2 M parameters; exports in seconds."""
        return cls(vocab_size=vocab_size)

    @classmethod
    def big(cls) -> DecoderSpec:
        """About 60 M parameters; for performance tests."""
        return cls(
            vocab_size=32000,
            dim=512,
            n_layers=8,
            n_heads=8,
            n_kv_heads=8,
            ffn_dim=1376,
            max_context_len=256,
            max_seq_len=128,
        )


@dataclass(frozen=True)
class VisionEncoderSpec(_Keyed):
    """A patch-convolution image encoder producing ``rows`` embeddings per image."""

    dtype: ImageDtype = "float32"
    rank: Literal[3, 4] = 4
    height: int = 32
    width: int = 32
    patch: int = 8
    #: >0 adds a stride-1 3x3 conv to this many channels over the whole image (a large planned activation).
    fat_channels: int = 0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.height % self.patch or self.width % self.patch:
            raise ValueError(f"image {self.height}x{self.width} is not a multiple of patch {self.patch}")
        if self.rank not in (3, 4):
            raise ValueError(f"rank must be 3 or 4, got {self.rank}")

    @property
    def rows(self) -> int:
        """Embeddings produced per image."""
        return (self.height // self.patch) * (self.width // self.patch)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the encoder's input tensor."""
        chw = (3, self.height, self.width)
        return (1, *chw) if self.rank == 4 else chw


@dataclass(frozen=True)
class AudioEncoderSpec(_Keyed):
    """A convolutional ("mel") or framing ("raw") audio encoder."""

    kind: AudioKind = "mel"
    n_bins: int = 16
    n_frames: int = 40
    #: Upper bound of the dynamic batch (chunk) dimension of a "mel" input.
    max_batch: int = 4
    n_samples: int = 1600
    seed: int = 2
    #: Samples per frame of a "raw" input.
    hop_length: int = 160

    def __post_init__(self) -> None:
        if self.kind == "mel" and self.n_frames % 4:
            raise ValueError(f"n_frames must be a multiple of 4, got {self.n_frames}")
        if self.kind == "raw" and self.n_samples % self.hop_length:
            raise ValueError(f"n_samples {self.n_samples} is not a multiple of hop_length {self.hop_length}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")

    @property
    def rows(self) -> int:
        """Embeddings produced per chunk (batch item) of input."""
        return self.n_frames // 4 if self.kind == "mel" else self.n_samples // self.hop_length

    def input_shape(self, batch: int = 1) -> tuple[int, ...]:
        """Shape of the encoder's input tensor for ``batch`` chunks ("mel" only; "raw" is always one)."""
        if self.kind == "mel":
            return (batch, self.n_bins, self.n_frames)
        return (1, self.n_samples)


@dataclass(frozen=True)
class ProgramSpec(_Keyed):
    """Everything that determines one ``.pte`` program."""

    decoder: DecoderSpec = DecoderSpec()
    kind: ProgramKind = "multimodal"
    vision: VisionEncoderSpec | None = None
    audio: AudioEncoderSpec | None = None
    backend: Backend = "portable"
    position_form: PositionForm = "start"
    #: True: the sequence dim T is dynamic in [1, max_seq_len]; False: static [1, 1] inputs.
    dynamic_shape: bool = True
    use_kv_cache: bool = True
    logits: LogitsForm = "last"
    eos_ids: tuple[int, ...] = (1,)
    #: Metadata methods left out of the program (e.g. "get_max_seq_len").
    omit_metadata: tuple[str, ...] = ()
    #: Program methods left out (e.g. "token_embedding"), for bad-input tests.
    omit_methods: tuple[str, ...] = ()
    #: Keep the weights in a separate `.ptd` file (ExecuTorch's external constants); portable only.
    external_weights: bool = False
    #: Token ids a scripted program says after any prompt, then EOS (`ScriptedDecoder`); () = a real decoder.
    script: tuple[int, ...] = ()
    #: >0: each position attends to the last this many positions only (a sliding window).
    sliding_window: int = 0
    #: With a window: the KV cache is a ring buffer of `sliding_window` rows (slot = position % window)
    #: and the program declares `sliding_window` in its metadata, as optimum's exports do; otherwise
    #: the cache keeps every position and only the attention mask slides.
    ring_cache: bool = False

    def __post_init__(self) -> None:
        if self.ring_cache and not 0 < self.sliding_window:
            raise ValueError("ring_cache needs sliding_window > 0")
        if self.ring_cache and self.max_input_len > self.sliding_window:
            raise ValueError(
                f"a ring cache of {self.sliding_window} rows cannot take {self.max_input_len} positions per call"
            )
        for name in ("eos_ids", "omit_metadata", "omit_methods", "script"):  # keep the spec hashable
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.external_weights and self.backend != "portable":
            raise ValueError("external_weights needs backend='portable' (delegates keep their own weights)")
        if self.kind == "text" and (self.vision is not None or self.audio is not None):
            raise ValueError("a text program has no encoders; use kind='multimodal'")
        if self.script and (self.kind != "multimodal" or self.logits != "last"):
            raise ValueError("a scripted program is multimodal with last-position logits")
        if self.kind == "multimodal" and not self.use_kv_cache:
            raise ValueError("a multimodal program needs use_kv_cache=True")
        if not self.use_kv_cache and not self.dynamic_shape:
            raise ValueError("without a KV cache the whole sequence is re-fed; set dynamic_shape=True")
        unknown = set(self.omit_metadata) - set(METADATA_METHODS)
        if unknown:
            raise ValueError(f"unknown metadata methods in omit_metadata: {sorted(unknown)}")

    @property
    def method_names(self) -> tuple[str, ...]:
        """Names of the compute (non-constant) methods the program holds."""
        if self.kind == "text":
            names: tuple[str, ...] = ("forward",)
        else:
            names = ("token_embedding", "text_decoder")
            if self.vision is not None:
                names += ("vision_encoder",)
            if self.audio is not None:
                names += ("audio_encoder",)
        return tuple(n for n in names if n not in self.omit_methods)

    @property
    def max_input_len(self) -> int:
        """Upper bound of the sequence dim T of the token/embedding input."""
        if not self.dynamic_shape:
            return 1
        return self.decoder.max_seq_len if self.use_kv_cache else self.decoder.max_context_len

    def metadata(self, bos_id: int = 0) -> dict[str, Any]:
        """Constant metadata methods and their values, minus ``omit_metadata``."""
        d = self.decoder
        values: dict[str, Any] = {
            "get_max_seq_len": d.max_seq_len if self.use_kv_cache else d.max_context_len,
            "get_max_context_len": d.max_context_len,
            "get_bos_id": bos_id,
            "get_eos_ids": list(self.eos_ids),
            "get_vocab_size": d.vocab_size,
            "use_kv_cache": self.use_kv_cache,
            "enable_dynamic_shape": self.dynamic_shape,
            "use_sdpa_with_kv_cache": False,
        }
        if self.ring_cache:
            values["sliding_window"] = self.sliding_window
        return {k: v for k, v in values.items() if k not in self.omit_metadata}
