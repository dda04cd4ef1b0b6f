"""Whether a program can be decoded speculatively, and the per-runner state speculation keeps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.decoder import MultimodalDecoderRunner, TextDecoderRunner
from mmcore.program import Program
from mmcore.speculative.draft import DraftModel, DraftModelDrafter
from mmcore.speculative.loop import Drafter, Speculation, SpeculationCounts, Verifier
from mmcore.speculative.ngram import NgramDrafter
from mmcore.speculative.policy import CallCosts, DraftPolicy
from mmcore.speculative.verify import SamplingParams

if TYPE_CHECKING:
    from mmcore.config import GenerationConfig
    from mmcore.structured import TokenMask

__all__ = ["SLIDING_WINDOW", "RunnerSpeculation", "speculation_unsupported"]

#: Metadata constant of programs whose attention (and KV cache) covers a window of this many positions.
SLIDING_WINDOW = "sliding_window"


def speculation_unsupported(program: Program, decoder: str, max_context_len: int) -> str | None:
    """Why drafts cannot be verified correctly by the program's method `decoder`, or None when they can."""
    spec = program.method_spec(decoder)
    output = spec.outputs[0] if spec.outputs else None
    first = spec.inputs[0] if spec.inputs else None
    if len(spec.inputs) < 2:
        return f"method '{decoder}' has no KV cache (it re-reads the whole sequence each call)"
    if output is None or output.rank != 3:
        return (
            f"method '{decoder}' returns only the last row's logits "
            f"({output.describe() if output else 'no tensor'}); verifying drafts needs logits for every "
            "row [1, T, V] (export the decoder with all logits)"
        )
    if first is None or first.rank < 2 or first.shape[1] < 2:
        return f"method '{decoder}' takes one position per call (a static [1, 1] input)"
    if output.shape[1] == 1:
        return (
            f"method '{decoder}' returns only the last row's logits ({output.describe()}) for up to "
            f"{first.shape[1]} rows per call; verifying drafts needs logits for every row"
        )
    window = program.constant_or(SLIDING_WINDOW, None)
    if isinstance(window, (int, float)) and not isinstance(window, bool) and 0 < window < max_context_len:
        return (
            f"the program declares {SLIDING_WINDOW}={int(window)} below its context ({max_context_len}): its "
            "KV cache is a ring buffer, where rows written for rejected drafts would overwrite positions "
            "still inside the window"
        )
    return None


class RunnerSpeculation:
    """What a runner keeps for speculative decoding: why it is unavailable (if it is), the verifier,
    the measured call costs (the program's, so kept across calls) and loaded draft models."""

    def __init__(
        self, program: Program, decoder: TextDecoderRunner | MultimodalDecoderRunner, max_context_len: int
    ) -> None:
        self.unsupported = speculation_unsupported(program, decoder.decoder.name, max_context_len)
        self.decoder = decoder
        self.max_context_len = max_context_len
        self.costs = CallCosts()
        self._verifier: Verifier | None = None
        self._drafts: dict[Path, DraftModel] = {}

    def for_call(
        self, config: GenerationConfig, history: list[int], extra: dict[str, Any], mask: TokenMask | None = None
    ) -> Speculation | None:
        """The speculation of one generate call, or None (the reason goes to `extra["speculative"]`);
        `mask`: the constrained answer's mask (drafts it forbids are rejected without a decoder call)."""
        settings = config.speculative
        if settings is None or not settings.enabled:
            return None
        info: dict[str, Any] = {"method": settings.method}
        extra["speculative"] = info
        off = self.unsupported
        if off is None and (config.repetition_penalty != 1.0 or config.frequency_penalty or config.presence_penalty):
            off = "penalties change the logits token by token; speculation needs the target's plain distribution"
        if off is None and config.logprobs:
            off = "logprobs are reported on the plain decode path only"
        if off is not None:
            info["off"] = off
            return None
        sampling = None if config.is_greedy else SamplingParams(config.temperature, config.top_k, config.top_p)
        rng = np.random.default_rng(config.seed)
        drafter: Drafter
        if settings.method == "ngram":
            drafter = NgramDrafter(settings.max_ngram, settings.min_ngram)
        else:
            assert settings.draft_model is not None
            model = self._drafts.get(settings.draft_model)
            if model is None:
                model = self._drafts[settings.draft_model] = DraftModel(settings.draft_model, self.decoder.vocab_width)
            drafter = DraftModelDrafter(model, sampling, rng)
        if self._verifier is None:
            self._verifier = Verifier(self.decoder)
        policy = DraftPolicy(settings.num_draft_tokens, self.costs, adaptive=settings.adaptive)
        counts = SpeculationCounts(settings.method)
        return Speculation(
            drafter,
            self._verifier,
            policy,
            history,
            max_context_len=self.max_context_len,
            counts=counts,
            sampling=sampling,
            rng=rng,
            mask=mask,
        )

    def report(self, speculation: Speculation, extra: dict[str, Any]) -> None:
        """Put the call's counts (and the draft model's own execution time) into `extra["speculative"]`."""
        info = extra.setdefault("speculative", {})
        info.update(speculation.counts.to_dict(self.costs))
        drafter = speculation.drafter
        if isinstance(drafter, DraftModelDrafter):
            info["draft_model"] = str(drafter.model.path)
            info["draft_model_execution_s"] = drafter.model.stats.model_execution_time_s
            drafter.model.stats.reset()
            if drafter.unavailable is not None:
                info["draft_unavailable"] = drafter.unavailable
