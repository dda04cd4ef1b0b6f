"""A decoder that really copies, for the speculative benchmark: ``python3 bench/copy_model.py``.

Task: ``BOS COPY s_1 .. s_32 SEP`` -> ``s_1 .. s_32 EOS`` (ids drawn from 2,000 ordinary tokenizer
ids; a fixed length, so copying is attending 33 positions back, which a small model learns in
minutes on one CPU thread). A 2-layer, 2-head, dim-128 decoder over the first 2,304 ids
(`mmcore.testing.models.Decoder`, head size 64) is trained on it from scratch on the CPU (seeded,
one thread, deterministic, minutes), then placed exactly inside the ~60M architecture
(`DecoderSpec.big()`: dim 512, 8 layers, 8 heads of 64, FFN 1376): its heads, FFN rows and residual
dimensions occupy the first slots, RMSNorm scales are corrected for the wider mean, the output rows
of ids past 2,304 copy the row of the COPY marker (an id the model learnt never to emit), and every
other weight is zero (the extra layers are identities). The exported program runs the full 60M
computation (dense kernels do not skip zeros) and copies as the small model does. Weights and
programs are cached next to the test programs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mmcore.testing import DecoderSpec, ProgramSpec, build_tokenizer, default_cache_dir, tokenizer_vocab_size
from mmcore.testing.cache import program_cache_key
from mmcore.testing.export import export_program
from mmcore.testing.models import Decoder, ForwardNoCache

logger = logging.getLogger("copy_model")

COPY_ID, SEP_ID = 5, 6  # special ids of the test tokenizer used as task markers
BOS_ID, EOS_ID = 0, 1
CONTENT = range(300, 2300)  # ordinary ids the copied text is drawn from
SMALL_VOCAB = 2304  # the small model's vocabulary: every id the task uses
LENGTHS = (32, 32)
STEPS, SEED, CONTEXT, BATCH = 1500, 0, 256, 4


def small_spec() -> DecoderSpec:
    return DecoderSpec(
        vocab_size=SMALL_VOCAB, dim=128, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=344,
        max_context_len=CONTEXT, max_seq_len=128, init_std=0.02,
    )  # fmt: skip


def big_spec(vocab: int) -> DecoderSpec:
    return dataclasses.replace(DecoderSpec.big(), vocab_size=vocab)


def example(gen: torch.Generator) -> tuple[list[int], list[int]]:
    """(prompt, answer) of one copy example."""
    n = int(torch.randint(LENGTHS[0], LENGTHS[1] + 1, (1,), generator=gen))
    text = (torch.randint(0, len(CONTENT), (n,), generator=gen) + CONTENT.start).tolist()
    return [BOS_ID, COPY_ID, *text, SEP_ID], [*text, EOS_ID]


def sequence(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One example's ids `[1, T]` and a mask `[T - 1]` of the positions that predict the answer."""
    prompt, answer = example(gen)
    ids = torch.tensor(prompt + answer)[None]
    mask = torch.tensor([False] * (len(prompt) - 1) + [True] * len(answer))
    return ids, mask


def train(steps: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # deterministic, and far faster than two threads on a busy machine
    model = Decoder(small_spec(), use_kv_cache=False).train()
    body = model.body
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    began = time.perf_counter()
    for step in range(steps):
        lr = 1e-3 * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        for _ in range(BATCH):  # the test decoder takes one sequence per call: accumulate a batch
            ids, mask = sequence(gen)
            pos = torch.arange(ids.shape[1])
            h = model.tok_embeddings(ids)  # [1, T, D]
            for layer in body.layers:
                h = layer(h, pos, body.rope_cos[pos], body.rope_sin[pos])
            logits = body.output(body.norm(h)[0, :-1][mask])  # [answer positions, V]
            loss = F.cross_entropy(logits, ids[0, 1:][mask]) / BATCH
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            logger.info("step %d loss %.4f (%.0f s)", step, loss.item() * BATCH, time.perf_counter() - began)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def copy_accuracy(weights: dict[str, torch.Tensor], spec: DecoderSpec, n: int = 20, seed: int = 123) -> float:
    """Fraction of held-out examples whose greedy answer is exactly the copy (eager, no cache)."""
    model = Decoder(spec, use_kv_cache=False)
    model.load_state_dict(weights, strict=False)
    forward = ForwardNoCache(model, all_logits=False).eval()
    gen = torch.Generator().manual_seed(seed)
    right = 0
    for _ in range(n):
        prompt, answer = example(gen)
        ids = list(prompt)
        for _ in range(len(answer)):
            ids.append(int(forward(torch.tensor(ids)[None])[0].argmax()))
        right += ids[len(prompt) :] == answer
    return right / n


def widen(small: dict[str, torch.Tensor], spec: DecoderSpec, big: DecoderSpec) -> dict[str, torch.Tensor]:
    """The small model's weights inside the big architecture (see the module docstring)."""
    target = Decoder(big, use_kv_cache=True).state_dict()
    out = {k: torch.zeros_like(v) for k, v in target.items() if k in small or ".layers." in k or "norm" in k}
    d, f = spec.dim, spec.ffn_dim
    norm_scale = math.sqrt(d / big.dim)  # rms over big.dim of a vector living in the first d dims
    for name, value in small.items():
        dest = out[name]
        if name.endswith("norm.weight"):
            dest[:d] = value * norm_scale
        elif name.endswith(("wq.weight", "wk.weight", "wv.weight")):
            dest[: value.shape[0], :d] = value  # heads 0..H-1 of the same head size
        elif name.endswith("wo.weight"):
            dest[:d, : value.shape[1]] = value
        elif name.endswith(("w1.weight", "w3.weight")):
            dest[:f, :d] = value
        elif name.endswith("w2.weight"):
            dest[:d, :f] = value
        elif name.endswith("tok_embeddings.weight"):
            dest[: value.shape[0], :d] = value  # ids past the small vocabulary never occur in the task
        elif name.endswith("output.weight"):
            dest[: value.shape[0], :d] = value
            # Ids past the small vocabulary score as the COPY marker, which the model learnt never to emit.
            dest[value.shape[0] :, :d] = value[COPY_ID]
        else:
            raise KeyError(f"unexpected weight {name}")
    for name in out:
        if name.endswith("norm.weight") and name not in small:
            out[name].fill_(1.0)  # identity layers: their branches are zero anyway
    return out


def build(steps: int = STEPS, seed: int = SEED) -> tuple[Path, Path, float]:
    """(60M-shaped copy program, its tokenizer, held-out exact-copy accuracy), cached."""
    tokenizer = build_tokenizer(vocab_size=32000)
    vocab = tokenizer_vocab_size(tokenizer)
    small, big = small_spec(), big_spec(vocab)
    root = default_cache_dir()
    spec = ProgramSpec(decoder=big, backend="xnnpack", logits="all")
    key = f"copyb{BATCH}-{LENGTHS[0]}-{LENGTHS[1]}-{steps}-{seed}-{program_cache_key(spec)}"
    weights_path, pte = root / f"{key}.pt", root / f"{key}.pte"
    if not weights_path.is_file():
        torch.save(train(steps, seed), weights_path)
    weights = torch.load(weights_path)
    accuracy = copy_accuracy(weights, small)
    if not pte.is_file():
        export_program(spec, pte, weights=widen(weights, small, big))
    return pte, tokenizer, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pte, tokenizer, accuracy = build(args.steps, args.seed)
    print(f"program {pte}\ntokenizer {tokenizer}\nheld-out exact copies (small model, eager): {accuracy:.2f}")


if __name__ == "__main__":
    main()
