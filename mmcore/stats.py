"""Generation statistics with ExecuTorch's `Stats` fields, JSON keys, order and formulas."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats", "now_ms"]


def now_ms() -> int:
    """Wall-clock milliseconds, as ExecuTorch's `time_in_ms()`."""
    return time.time_ns() // 1_000_000


@dataclass
class Stats:
    """Timings and counts of one `generate` call (ExecuTorch `extension/llm/runner/stats.h`).

    Unlike ExecuTorch, model-execution times are measured (every decoder and encoder call), and
    `num_prompt_tokens` counts this call's prompt positions, not the cumulative position.
    Times are integer wall-clock milliseconds; the `*_s` fields keep the precise durations.
    """

    SCALING_FACTOR_UNITS_PER_SECOND: int = 1000
    model_load_start_ms: int = 0
    model_load_end_ms: int = 0
    inference_start_ms: int = 0
    inference_end_ms: int = 0
    model_execution_start_ms: int = 0
    model_execution_end_ms: int = 0
    prompt_eval_end_ms: int = 0
    first_token_ms: int = 0
    aggregate_sampling_time_ms: int = 0
    aggregate_model_execution_time_ms: int = 0
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0
    # Precise durations in seconds (perf_counter), not part of ExecuTorch's JSON.
    sampling_time_s: float = 0.0
    model_execution_time_s: float = 0.0
    prefill_time_s: float = 0.0
    decode_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def record_execution(self, start_ms: int, seconds: float) -> None:
        """Account one model execution that began at `start_ms` and ran for `seconds`."""
        self.model_execution_start_ms = start_ms
        self.model_execution_end_ms = now_ms()
        self.model_execution_time_s += seconds

    def reset(self, all_stats: bool = False) -> None:
        """Clear everything but the model-load times (those too with `all_stats`)."""
        load = (self.model_load_start_ms, self.model_load_end_ms)
        fresh = Stats()
        self.__dict__.update(fresh.__dict__)
        if not all_stats:
            self.model_load_start_ms, self.model_load_end_ms = load

    def to_dict(self) -> dict[str, Any]:
        """ExecuTorch's JSON object: same keys, same order, same formulas."""
        out: dict[str, Any] = {}
        prefill_ms = self.prompt_eval_end_ms - self.inference_start_ms
        decode_ms = self.inference_end_ms - self.prompt_eval_end_ms
        if prefill_ms > 0:
            out["prefill_token_per_sec"] = self.num_prompt_tokens / prefill_ms * self.SCALING_FACTOR_UNITS_PER_SECOND
        if decode_ms > 0:
            out["decode_token_per_sec"] = self.num_generated_tokens / decode_ms * self.SCALING_FACTOR_UNITS_PER_SECOND
        out["prompt_tokens"] = self.num_prompt_tokens
        out["generated_tokens"] = self.num_generated_tokens
        for key in (
            "model_load_start_ms",
            "model_load_end_ms",
            "inference_start_ms",
            "inference_end_ms",
            "model_execution_start_ms",
            "model_execution_end_ms",
            "prompt_eval_end_ms",
            "first_token_ms",
            "aggregate_sampling_time_ms",
            "aggregate_model_execution_time_ms",
        ):
            out[key] = getattr(self, key)
        out["SCALING_FACTOR_UNITS_PER_SECOND"] = self.SCALING_FACTOR_UNITS_PER_SECOND
        return out

    def to_json_string(self) -> str:
        """The JSON ExecuTorch prints after `PyTorchObserver`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def finish(self) -> None:
        """Round the precise aggregates into ExecuTorch's integer-millisecond fields."""
        self.aggregate_sampling_time_ms = round(self.sampling_time_s * 1000)
        self.aggregate_model_execution_time_ms = round(self.model_execution_time_s * 1000)

    def report(self) -> str:
        """A human-readable summary, as ExecuTorch's `print_report` logs it."""
        total_s = max(self.inference_end_ms - self.inference_start_ms, 0) / 1000
        lines = [
            f"Prompt tokens: {self.num_prompt_tokens}    Generated tokens: {self.num_generated_tokens}",
            f"Model load time: {(self.model_load_end_ms - self.model_load_start_ms) / 1000:.3f} s",
            f"Total inference time: {total_s:.3f} s",
            f"Time to first token: {(self.first_token_ms - self.inference_start_ms) / 1000:.3f} s",
        ]
        if self.prefill_time_s > 0:
            lines.append(f"Prompt evaluation: {self.num_prompt_tokens / self.prefill_time_s:.1f} tokens/s")
        if self.decode_time_s > 0:
            lines.append(f"Generation: {self.num_generated_tokens / self.decode_time_s:.1f} tokens/s")
        lines.append(f"Model execution time: {self.model_execution_time_s:.3f} s")
        lines.append(f"Sampling time: {self.sampling_time_s:.3f} s")
        return "\n".join(lines)
