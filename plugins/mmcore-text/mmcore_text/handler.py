"""The text modality: strings become token ids with the request's BOS/EOS counts."""

from __future__ import annotations

from dataclasses import dataclass

from mmcore.errors import InvalidInputError
from mmcore.inputs import TokensInput
from mmcore.registry import PrefillContext

__all__ = ["TextInput", "TextHandler"]


@dataclass(frozen=True)
class TextInput:
    """A piece of prompt text (a plain `str` works too)."""

    text: str


class TextHandler:
    """Tokenizes `str` and `TextInput` inputs with the runner's tokenizer."""

    name = "text"
    input_types: tuple[type, ...] = (str, TextInput)
    #: The text modality takes no settings.
    settings_keys: tuple[str, ...] = ()

    def preprocess(self, item: str | TextInput, ctx: PrefillContext) -> TokensInput:
        """Token ids of the text with `ctx.num_bos` BOS and `ctx.num_eos` EOS ids (possibly empty)."""
        text = item.text if isinstance(item, TextInput) else item
        if not isinstance(text, str):
            raise InvalidInputError(
                f"input {ctx.index}: text must be a str, got {type(text).__name__}; pass a str or TextInput(str)"
            )
        if ctx.tokenizer is None:
            raise InvalidInputError(
                f"input {ctx.index}: text needs a tokenizer, but the runner has none; pass a tokenizer "
                "(e.g. tokenizer='path/to/tokenizer.json') or give token ids as TokensInput"
            )
        return TokensInput(ctx.tokenizer.encode(text, bos=ctx.num_bos, eos=ctx.num_eos))

    def prefill(self, prepared: TokensInput, ctx: PrefillContext) -> TokensInput:
        """The ids from `preprocess`, unchanged; the core prefills them."""
        return prepared

    def parse_cli(self, value: str) -> TextInput:
        """`--text VALUE` on the command line."""
        return TextInput(value)

    def __repr__(self) -> str:
        return "TextHandler()"
