"""A ~60M decoder that really copies, for the speculative benchmark: ``python3 bench/copy_model.py``.

Task: ``BOS COPY s_1 .. s_N SEP`` -> ``s_1 .. s_N EOS`` for any N ordinary ids (``OFFSET`` = N).

The weights are constructed, not trained (training a copy model from scratch on a shared 2-core CPU
did not converge in the minutes a benchmark can spend). The model is the ~60M test architecture
(`DecoderSpec.big()`: dim 512, 8 layers, 8 heads of 64, FFN 1376) computing a real copy circuit:

- every token embeds as a random code (480 dims, equal norms) plus a constant dimension;
- in layer 0 all 8 heads read only the constant dimension for queries and keys, with the query
  pre-rotated by RoPE's angle for ``OFFSET`` positions, so that every position attends (sharply:
  the fastest-rotating frequency pairs, large amplitude) to the position ``OFFSET`` back; their values
  carry the attended token's code (60 dims per head) into the residual stream at three times the
  strength of the current token's own code;
- every other weight is zero (the remaining layers are identities, but the dense kernels still do
  the full 60M computation per token), and the output head scores each id by its code, the EOS row
  taking the SEP marker's code (so the step that reads SEP emits EOS).

Greedy decoding therefore continues any text with whatever stood ``OFFSET`` positions earlier, which
is what an input-grounded answer that repeats its prompt looks like to a prompt-lookup drafter. The
acceptance rate the benchmark measures is the real agreement of the program's own greedy choice
with the drafts. ``check()`` verifies the copy on held-out prompts through the exported program.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from mmcore.testing import DecoderSpec, ProgramSpec, build_tokenizer, default_cache_dir, tokenizer_vocab_size
from mmcore.testing.cache import program_cache_key
from mmcore.testing.export import export_program
from mmcore.testing.models import Decoder

__all__ = ["BOS_ID", "COPY_ID", "EOS_ID", "OFFSET", "SEP_ID", "build", "check", "copy_prompt", "copy_weights"]

COPY_ID, SEP_ID = 5, 6  # special ids of the test tokenizer used as task markers
BOS_ID, EOS_ID = 0, 1
CONTENT = range(300, 2300)  # ordinary ids the copied text is drawn from
OFFSET = 96  # copied text length: the answer's token p reads the prompt's token p - OFFSET
CODE_DIMS = 60  # code dimensions carried by each head's value
FAST_PAIRS = 12  # RoPE frequency pairs used for the position match (the fastest-rotating ones)
AMPLITUDE = 40.0  # query/key strength per pair: the score margin between the target and its neighbours
GAIN = 3.0  # the attended code's strength relative to the current token's own code
SEED = 0


def spec(vocab: int) -> DecoderSpec:
    return dataclasses.replace(DecoderSpec.big(), vocab_size=vocab)


def copy_weights(decoder: DecoderSpec, offset: int = OFFSET, seed: int = SEED) -> dict[str, torch.Tensor]:
    """The copy circuit's state dict for `mmcore.testing.models.Decoder(decoder)`."""
    d, heads, hd, vocab = decoder.dim, decoder.n_heads, decoder.head_dim, decoder.vocab_size
    code = heads * CODE_DIMS
    const = d - 1  # the constant dimension
    if code >= const or CODE_DIMS > hd:
        raise ValueError(f"{heads} heads x {CODE_DIMS} code dims do not fit dim {d} / head size {hd}")
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randn(vocab, code, generator=gen)  # [V, code]
    codes = codes / codes.norm(dim=1, keepdim=True) * math.sqrt(code)
    state = {k: torch.zeros_like(v) for k, v in Decoder(decoder, use_kv_cache=False).state_dict().items()}
    for name, value in state.items():
        if name.endswith("norm.weight"):
            value.fill_(1.0)
    embed = state["tok_embeddings.weight"]  # [V, D]
    embed[:, :code] = codes
    embed[:, const] = math.sqrt(code)
    # RMSNorm sees |x|^2 = 2 * code for every token, so the normed constant dimension is fixed.
    normed_const = math.sqrt(code) * math.sqrt(d / (2 * code))
    half = hd // 2
    inv_freq = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float64) / half))  # [hd/2]
    prefix = "body.layers.0.attention."
    wq, wk = state[prefix + "wq.weight"], state[prefix + "wk.weight"]  # [H*hd, D]
    wv, wo = state[prefix + "wv.weight"], state[prefix + "wo.weight"]
    for h in range(heads):
        for f in range(FAST_PAIRS):
            angle = -offset * float(inv_freq[f])  # q . k peaks where the key sits `offset` back
            row = h * hd + 2 * f
            amp = math.sqrt(AMPLITUDE) / normed_const
            wq[row, const], wq[row + 1, const] = amp * math.cos(angle), amp * math.sin(angle)
            wk[row, const] = amp
        wv[h * hd : h * hd + CODE_DIMS, h * CODE_DIMS : (h + 1) * CODE_DIMS] = torch.eye(CODE_DIMS)
        wo[h * CODE_DIMS : (h + 1) * CODE_DIMS, h * hd : h * hd + CODE_DIMS] = GAIN * torch.eye(CODE_DIMS)
    head = state["body.output.weight"]  # [V, D]
    head[:, :code] = codes
    head[EOS_ID, :code] = codes[SEP_ID]  # reading SEP (the end of the copied text) emits EOS
    head[SEP_ID] = 0.0
    return state


def copy_prompt(seed: int, offset: int = OFFSET) -> tuple[list[int], list[int]]:
    """(prompt, expected answer) of one copy example."""
    gen = torch.Generator().manual_seed(seed)
    text = (torch.randint(0, len(CONTENT), (offset,), generator=gen) + CONTENT.start).tolist()
    return [BOS_ID, COPY_ID, *text, SEP_ID], [*text, EOS_ID]


def build(offset: int = OFFSET) -> tuple[Path, Path]:
    """(the ~60M copy program with logits for every row, its tokenizer), cached next to the test programs."""
    tokenizer = build_tokenizer(vocab_size=32000)
    decoder = spec(tokenizer_vocab_size(tokenizer))
    if 2 * offset + 3 > decoder.max_context_len:
        raise ValueError(
            f"offset {offset} needs a context of {2 * offset + 3}, the program has {decoder.max_context_len}"
        )
    program = ProgramSpec(decoder=decoder, backend="xnnpack", logits="all")
    pte = default_cache_dir() / f"copy{offset}-{SEED}-{program_cache_key(program)}.pte"
    if not pte.is_file():
        export_program(program, pte, weights=copy_weights(decoder, offset))
    return pte, tokenizer


def check(pte: Path, tokenizer: Path, examples: int = 5, offset: int = OFFSET) -> float:
    """Fraction of held-out prompts whose greedy answer (mmcore, plain decoding) is exactly the copy."""
    from mmcore import GenerationConfig, TokensInput
    from mmcore.runner import MultimodalRunner

    runner = MultimodalRunner(pte, tokenizer)
    config = GenerationConfig(temperature=0.0, echo=False, max_new_tokens=offset + 1)
    right = 0
    for seed in range(1000, 1000 + examples):
        prompt, answer = copy_prompt(seed, offset)
        runner.reset()
        right += runner.generate([TokensInput(prompt)], config).tokens == answer
    return right / examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offset", type=int, default=OFFSET)
    args = parser.parse_args()
    pte, tokenizer = build(args.offset)
    print(
        f"program {pte}\ntokenizer {tokenizer}\nexact copies (held-out, exported program): {check(pte, tokenizer):.2f}"
    )


if __name__ == "__main__":
    main()
