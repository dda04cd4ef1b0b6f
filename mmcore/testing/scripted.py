"""A test program that always answers with the same text, whatever it is asked.

For tests that need a known answer through the whole stack (a server, a page): the answer is a
sequence of text pieces, each added to the tiny tokenizer as a token of its own, and the decoder is a
lookup table from the last token to the next one (any other token -> the first piece, each piece -> the
next, the last piece -> EOS). Attention and feed-forward blocks are zeroed, so the answer does not
depend on the prompt, its images or its length (only a prompt that ends in a piece continues from
that piece)::

    scripted = build_scripted_program(["<img src=x", " onerror=alert(1)>"])
    model = mmcore.open_model(scripted.program, tokenizer=scripted.tokenizer)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer

from mmcore.testing._files import atomic_dir, atomic_file, default_cache_dir, file_lock
from mmcore.testing.cache import program_cache_key
from mmcore.testing.specs import DecoderSpec, ProgramSpec, VisionEncoderSpec, _digest
from mmcore.testing.tokenizer import EOS_TOKEN, SPECIAL_TOKENS, build_tokenizer, tokenizer_vocab_size

__all__ = ["ScriptedProgram", "build_scripted_program"]

#: Logit of the scripted next token (every other token gets 0): greedy and sampled answers agree.
_MARGIN = 40.0


@dataclass(frozen=True)
class ScriptedProgram:
    """A built scripted program: the `.pte`, its tokenizer directory and the answer it gives."""

    program: Path
    tokenizer: Path
    pieces: tuple[str, ...]

    @property
    def text(self) -> str:
        """The whole answer."""
        return "".join(self.pieces)


def _scripted_tokenizer(pieces: tuple[str, ...], root: Path) -> Path:
    """The tiny tokenizer plus one added (non-special) token per piece."""
    base = build_tokenizer(root)
    target = root / f"tokenizer-scripted-{_digest({'base': base.name, 'pieces': pieces})}"
    if (target / "tokenizer.json").is_file():
        return target

    def fill(tmp: Path) -> None:
        tok = Tokenizer.from_file(str(base / "tokenizer.json"))
        added = tok.add_tokens([AddedToken(piece, normalized=False, special=False) for piece in pieces])
        if added != len(pieces):
            raise ValueError(f"pieces must be distinct and new to the tokenizer, got {pieces!r}")
        tok.save(str(tmp / "tokenizer.json"), pretty=True)
        (tmp / "tokenizer_config.json").write_text((base / "tokenizer_config.json").read_text())

    with file_lock(root / f".{target.name}.lock"):
        return atomic_dir(target, fill)


def _scripted_weights(spec: ProgramSpec, script: list[int], eos: int) -> dict[str, torch.Tensor]:
    """The decoder's state dict with the lookup-table weights: a token's embedding is a one-hot state and the
    output head maps each state to the next token."""
    from mmcore.testing.models import build_modules

    decoder, _ = build_modules(spec)
    d = spec.decoder
    with torch.no_grad():
        embed = torch.zeros(d.vocab_size, d.dim)  # [V, D]: state 0 for every token outside the script
        embed[:, 0] = 1.0
        head = torch.zeros(d.vocab_size, d.dim)  # [V, D]: state -> next token
        head[script[0], 0] = _MARGIN
        for state, token in enumerate(script, start=1):
            embed[token] = 0.0
            embed[token, state] = 1.0
            head[script[state] if state < len(script) else eos, state] = _MARGIN
        decoder.tok_embeddings.weight.copy_(embed)
        decoder.body.output.weight.copy_(head)
        decoder.body.norm.weight.fill_(1.0)
        for name, weight in decoder.body.layers.named_parameters():  # blocks add nothing to the residual
            if name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                weight.zero_()
    return decoder.state_dict()


def build_scripted_program(
    pieces: Sequence[str], *, vision: bool = True, cache_dir: Path | None = None
) -> ScriptedProgram:
    """A multimodal program (with an image encoder unless `vision=False`) that answers `pieces`
    then EOS, whatever the prompt; exported once per cache directory, like `build_program`.

    Pieces must be distinct; up to the decoder's width (63) of them.
    """
    pieces = tuple(pieces)
    if not pieces or len(set(pieces)) != len(pieces):
        raise ValueError(f"need at least one piece and no repeated piece, got {pieces!r}")
    root = cache_dir if cache_dir is not None else default_cache_dir()
    tokenizer = _scripted_tokenizer(pieces, root)
    decoder = DecoderSpec.tiny(tokenizer_vocab_size(tokenizer))
    if len(pieces) >= decoder.dim:
        raise ValueError(f"at most {decoder.dim - 1} pieces, got {len(pieces)}")
    spec = ProgramSpec(decoder, vision=VisionEncoderSpec() if vision else None)
    vocab = json.loads((tokenizer / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in vocab["added_tokens"]}
    script = [ids[piece] for piece in pieces]
    key = _digest({"program": program_cache_key(spec), "script": script, "rev": 2})
    target = root / f"scripted-{key}.pte"
    if target.is_file():
        return ScriptedProgram(target, tokenizer, pieces)
    with file_lock(root / f".scripted-{key}.lock"):
        if not target.is_file():
            from mmcore.testing.export import export_program

            weights = _scripted_weights(spec, script, SPECIAL_TOKENS.index(EOS_TOKEN))

            def write(tmp: Path) -> None:
                export_program(spec, tmp, weights=weights)

            atomic_file(target, write)
    return ScriptedProgram(target, tokenizer, pieces)
