"""Tiny ASCII byte-level BPE tokenizers with family-specific special tokens."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from mmcore.testing.tokenizer import _sentences

__all__ = ["train_bpe"]


def train_bpe(specials: Sequence[str], vocab_size: int, bos: str | None = None) -> Tokenizer:
    """A BPE tokenizer with ``specials`` at ids ``0..len(specials)-1`` and about ``vocab_size`` tokens.

    Every id decodes on its own to a distinct ASCII string. With ``bos`` set, encoding prepends it.
    """
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(specials), initial_alphabet=[], show_progress=False
    )
    tok.train_from_iterator(_sentences(vocab_size), trainer=trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    for i, name in enumerate(specials):
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"special token {name!r} got id {tok.token_to_id(name)}, expected {i}")
    pieces = [tok.decode([i], skip_special_tokens=False) for i in range(tok.get_vocab_size())]
    if len(set(pieces)) != len(pieces):
        raise RuntimeError("two token ids decode to the same piece")
    return tok
