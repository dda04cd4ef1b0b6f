"""Speculative decoding: more than one token per decoder call, the same tokens as plain decoding.

A drafter (`NgramDrafter`: prompt lookup; `DraftModelDrafter`: a smaller program with the same
tokenizer) proposes k tokens; the target decoder verifies them in one call at positions p..p+k
(`Verifier`, natively when it can); `verify` accepts the longest agreeing prefix (greedy) or applies
the rejection rule (sampled); `DraftPolicy` adapts k and switches speculation off when the measured
cost of a (k + 1)-row call does not pay for the expected accepted tokens. See docs/speculative.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcore._lazy import lazy_getattr
from mmcore.speculative.settings import METHODS, SpeculativeConfig, parse_speculative

if TYPE_CHECKING:
    from mmcore.speculative.draft import DraftModel, DraftModelDrafter
    from mmcore.speculative.loop import Drafter, Speculation, SpeculationCounts, Verifier
    from mmcore.speculative.ngram import NO_TOKEN, NgramDrafter
    from mmcore.speculative.policy import CallCosts, DraftPolicy
    from mmcore.speculative.support import RunnerSpeculation, speculation_unsupported
    from mmcore.speculative.verify import SamplingParams, accept_greedy, accept_sampled, probabilities

__all__ = [
    "METHODS",
    "NO_TOKEN",
    "CallCosts",
    "DraftModel",
    "DraftModelDrafter",
    "DraftPolicy",
    "Drafter",
    "NgramDrafter",
    "RunnerSpeculation",
    "SamplingParams",
    "Speculation",
    "SpeculationCounts",
    "SpeculativeConfig",
    "Verifier",
    "accept_greedy",
    "accept_sampled",
    "parse_speculative",
    "probabilities",
    "speculation_unsupported",
]

# Everything but the settings is imported on first use, so `mmcore.config` (and with it the command's
# start-up, `mmcore --help`) imports the settings without numpy or the program layer.
_LAZY = {
    "NO_TOKEN": "ngram",
    "NgramDrafter": "ngram",
    "CallCosts": "policy",
    "DraftPolicy": "policy",
    "SamplingParams": "verify",
    "accept_greedy": "verify",
    "accept_sampled": "verify",
    "probabilities": "verify",
    "DraftModel": "draft",
    "DraftModelDrafter": "draft",
    "DraftFilter": "loop",
    "Drafter": "loop",
    "Speculation": "loop",
    "SpeculationCounts": "loop",
    "Verifier": "loop",
    "RunnerSpeculation": "support",
    "speculation_unsupported": "support",
}


__getattr__ = lazy_getattr("mmcore.speculative", _LAZY)
