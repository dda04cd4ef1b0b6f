"""The sampler: greedy ties, seeded reproducibility, top-k and top-p truncation, full logits width."""

from __future__ import annotations

import numpy as np
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


def test_numpy_and_torch_logits_sample_alike():
    from mmcore.arrays import BFLOAT16

    logits = np.random.default_rng(5).standard_normal(300).astype(np.float32)

    def draw(values, **kw) -> list[int]:
        sampler = Sampler(temperature=0.9, seed=11, **kw)
        return [sampler(values) for _ in range(40)]

    assert draw(logits) == draw(torch.from_numpy(logits))
    assert draw(logits, top_k=20, top_p=0.8) == draw(torch.from_numpy(logits), top_k=20, top_p=0.8)
    bf16 = logits.astype(BFLOAT16)
    assert draw(bf16) == draw(torch.from_numpy(logits).to(torch.bfloat16))
    assert Sampler()(bf16) == int(np.argmax(logits.astype(BFLOAT16).astype(np.float32)))


def test_sampled_frequencies_follow_the_distribution():
    probs = np.array([0.4, 0.0, 0.25, 0.2, 0.1, 0.05])
    with np.errstate(divide="ignore"):
        logits = np.log(probs).astype(np.float32)
    n = 20_000
    sampler = Sampler(temperature=1.0, seed=0, logprobs=True)
    counts = np.bincount([sampler(logits) for _ in range(n)], minlength=len(probs))
    assert counts[1] == 0  # zero probability is never drawn
    # within 4 standard deviations of the expected count
    assert np.all(np.abs(counts - n * probs) <= 4 * np.sqrt(n * probs * (1 - probs)) + 1)
    # top-p 0.7 keeps {0, 2, 3} renormalised; logprobs are under that distribution
    sampler = Sampler(temperature=1.0, top_p=0.7, seed=1, logprobs=True)
    kept = probs[[0, 2, 3]] / probs[[0, 2, 3]].sum()
    draws = []
    for _ in range(n):
        token = sampler(logits)
        draws.append(token)
        assert sampler.last_logprob is not None
        assert abs(sampler.last_logprob - np.log(kept[[0, 2, 3].index(token)])) < 1e-5
    counts = np.bincount(draws, minlength=len(probs))[[0, 2, 3]]
    assert np.all(np.abs(counts - n * kept) <= 4 * np.sqrt(n * kept * (1 - kept)) + 1)


def test_top_p_samples_as_a_full_sort_would(monkeypatch):
    """The partial (partition-based) nucleus gives the tokens a full stable sort gives, ties too."""
    import mmcore.sampling

    rng = np.random.default_rng(3)
    cases = [
        rng.standard_normal(5000).astype(np.float32) * 3,  # peaked: a small nucleus
        np.zeros(3000, dtype=np.float32),  # all tied: the nucleus is most of the vocabulary
        np.round(rng.standard_normal(4000), 1).astype(np.float32),  # many ties at the boundary
    ]

    def draw(logits: np.ndarray, top_p: float) -> list[tuple[int, float | None]]:
        sampler = Sampler(temperature=0.7, top_p=top_p, seed=9, logprobs=True)
        return [(sampler(logits), sampler.last_logprob) for _ in range(25)]

    partial = [draw(logits, top_p) for logits in cases for top_p in (0.1, 0.5, 0.95)]
    monkeypatch.setattr(mmcore.sampling, "_nucleus_order", lambda probs, top_p: np.argsort(-probs, kind="stable"))
    assert partial == [draw(logits, top_p) for logits in cases for top_p in (0.1, 0.5, 0.95)]


def _log_softmax64(row: np.ndarray) -> np.ndarray:
    shifted = row.astype(np.float64) - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def test_top_logprobs_are_the_most_likely_ids_of_the_sampled_distribution():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal(300).astype(np.float32) * 2
    logits[[7, 9]] = logits.max() + 1  # a tie at the top: the lower id first
    # greedy: log-softmax of the logits; the chosen token is the top-1
    greedy = Sampler(top_logprobs=5)
    token = greedy(logits)
    reference = _log_softmax64(logits)
    expected = sorted(range(300), key=lambda i: (-reference[i], i))[:5]
    assert greedy.logprobs and greedy.last_top is not None
    assert [i for i, _ in greedy.last_top] == expected and expected[:2] == [7, 9] and token == 7
    assert np.allclose([v for _, v in greedy.last_top], reference[expected], atol=1e-5)
    assert greedy.last_logprob == greedy.last_top[0][1]
    # sampled at temperature 0.7 with top-k 50: the same distribution the token is drawn from
    sampled = Sampler(temperature=0.7, top_k=50, seed=2, top_logprobs=20)
    for _ in range(20):
        token = sampled(logits)
        scaled = logits.astype(np.float64) / 0.7
        kth = np.sort(scaled)[-50]
        reference = _log_softmax64(np.where(scaled < kth, -np.inf, scaled))
        assert sampled.last_top is not None and len(sampled.last_top) == 20
        values = [v for _, v in sampled.last_top]
        assert values == sorted(values, reverse=True)
        assert np.allclose(values, np.sort(reference)[::-1][:20], atol=1e-4)
        assert abs(sampled.last_logprob - reference[token]) < 1e-4
    # top-p: the renormalised nucleus; ids outside it have -inf
    probs = np.array([0.4, 0.0, 0.25, 0.2, 0.1, 0.05])
    with np.errstate(divide="ignore"):
        small = np.log(probs).astype(np.float32)
    nucleus = Sampler(temperature=1.0, top_p=0.7, seed=1, top_logprobs=4)
    token = nucleus(small)
    kept = probs[[0, 2, 3]] / probs[[0, 2, 3]].sum()
    assert nucleus.last_top is not None
    assert [i for i, _ in nucleus.last_top] == [0, 2, 3, 1]
    assert np.allclose([v for _, v in nucleus.last_top[:3]], np.log(kept), atol=1e-6)
    assert nucleus.last_top[3][1] == -np.inf and token in (0, 2, 3)


def test_no_top_logprobs_work_unless_asked():
    sampler = Sampler(temperature=1.0, seed=0, logprobs=True)
    sampler(np.zeros(10, dtype=np.float32))
    assert sampler.last_top is None and sampler.last_logprob is not None
