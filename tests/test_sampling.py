"""The sampler: greedy ties, seeded reproducibility, top-k and top-p truncation, full logits width."""

from __future__ import annotations

import torch

from mmcore.sampling import Sampler


def test_greedy_takes_the_first_maximum():
    logits = torch.tensor([0.1, 3.0, 3.0, -1.0])
    assert Sampler(temperature=0)(logits) == 1
    assert Sampler(temperature=1.0, top_k=1, seed=0)(logits) == 1


def test_sampler_covers_the_whole_logits_width():
    logits = torch.zeros(32000)
    logits[30134] = 10.0
    assert Sampler()(logits) == 30134


def test_same_seed_same_tokens_different_seed_different_tokens():
    logits = torch.randn(512, generator=torch.Generator().manual_seed(0))

    def draw(seed: int) -> list[int]:
        sampler = Sampler(temperature=1.0, seed=seed)
        return [sampler(logits) for _ in range(30)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_top_k_limits_the_candidates():
    logits = torch.arange(10, dtype=torch.float32)
    sampler = Sampler(temperature=5.0, top_k=3, seed=0)
    assert {sampler(logits) for _ in range(300)} == {7, 8, 9}


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    sampler = Sampler(temperature=1.0, top_p=0.7, seed=0)
    assert {sampler(probs.log()) for _ in range(300)} == {0, 1}


def test_low_precision_logits_are_sampled():
    logits = torch.tensor([0.0, 5.0, 0.0], dtype=torch.bfloat16)
    assert Sampler()(logits) == 1
    assert Sampler(temperature=0.01, seed=3)(logits) == 1
