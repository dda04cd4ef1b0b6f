"""Types of mmcore._native (mmcore/_native.cpp): ExecuTorch methods and greedy loops below Python.

A tensor input is `(data_ptr, ExecuTorch ScalarType id, shape)`; a tensor output is
`(ScalarType id, shape, buffer)`. `embedding` names the token-embedding method, or is None when the
decoder takes token ids itself.
"""

from collections.abc import Callable, Sequence

from typing_extensions import Buffer

TensorIn = tuple[int, int, Sequence[int]]
TensorOut = tuple[int, tuple[int, ...], Buffer]
Value = TensorIn | bool | int | float

class ExecutorchError(RuntimeError):
    """An ExecuTorch call failed (its error code is in the message)."""

class Module:
    """An ExecuTorch program whose methods run through the wheel's runtime."""

    def __init__(self, path: str, data_path: str | None = None) -> None: ...
    def load_method(self, name: str) -> None:
        """Load a method with its own planned memory."""
    def execute(self, name: str, inputs: Sequence[Value], alias: bool) -> list[TensorOut | bool | int | float]:
        """Run a method; with `alias` tensor outputs share the method's memory until its next call."""
    def prefill_tokens(
        self, embedding: str | None, decoder: str, ids: Sequence[int], start_pos: int, chunk: int, cache_positions: bool
    ) -> tuple[Buffer, int, float, int]:
        """Prefill ids in chunks -> (last logits row, its dtype id, seconds executing, its argmax)."""
    def greedy_decode(
        self,
        embedding: str | None,
        decoder: str,
        token: int,
        pos: int,
        max_steps: int,
        eos_ids: Sequence[int],
        on_token: Callable[[int], object],
        mask: Buffer | None = None,
        /,
    ) -> tuple[list[int], float]:
        """Greedy decoding from `token` at `pos` -> (new token ids, seconds executing)."""
    def verify_greedy(
        self, embedding: str | None, decoder: str, ids: Sequence[int], start_pos: int, cache_positions: bool, /
    ) -> tuple[list[int], int, float]:
        """Run draft ids in one step -> (argmax of every logits row, accepted drafts, seconds executing)."""

def registered_operators() -> list[str]:
    """Names of the operators the runtime has kernels for ("aten::add.out"), sorted."""

def registered_backends() -> list[str]:
    """Names of the delegate backends registered with the runtime ("XnnpackBackend")."""

def llm_kernel_names() -> list[str]:
    """The `llama::` operators mmcore has its own kernels for (mmcore/_llm_ops.cpp)."""

def register_llm_kernel(name: str, metas: Sequence[tuple[int, Sequence[int]]], /) -> str:
    """Register mmcore's kernel for `name` under the kernel key of `metas` ((dtype, dim order) per tensor
    argument) -> "registered", "present" (that key is registered) or "executorch" (ExecuTorch's
    library provides the operator; nothing registered)."""
