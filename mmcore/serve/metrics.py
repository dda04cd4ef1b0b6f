"""Server metrics in Prometheus' text format (`prometheus_client`, one registry per service)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Requests by endpoint and status, token counts, time to first token, per-token latency, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mmcore_requests", "Requests answered, by endpoint and HTTP status", ["endpoint", "status"], registry=r
        )
        self.prompt_tokens = Counter("mmcore_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.cached_tokens = Counter(
            "mmcore_cached_prompt_tokens", "Prompt tokens reused from a slot's KV cache", registry=r
        )
        self.generated_tokens = Counter("mmcore_generated_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram(
            "mmcore_time_to_first_token_seconds", "From the request's arrival to its first token",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.token_latency = Histogram(
            "mmcore_time_per_output_token_seconds", "Mean time between generated tokens, per request",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.draft_proposed = Counter(
            "mmcore_draft_tokens_proposed", "Speculative draft tokens verified by the model", registry=r
        )
        self.draft_accepted = Counter(
            "mmcore_draft_tokens_accepted", "Speculative draft tokens the model agreed with", registry=r
        )
        self.timeouts = Counter(
            "mmcore_request_timeouts", "Requests stopped by the server's request timeout", registry=r
        )
        self.queue_depth = Gauge("mmcore_queue_depth", "Requests waiting for a slot", registry=r)
        self.busy_slots = Gauge("mmcore_busy_slots", "Slots serving a request", registry=r)

    def watch(self, queue_depth: Callable[[], int], busy: Callable[[], int]) -> None:
        """Read the pool's queue depth and busy slots at scrape time."""
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.busy_slots.set_function(lambda: float(busy()))

    def count(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()

    def timed_out(self) -> None:
        self.timeouts.inc()

    def finished(
        self, *, prompt: int, cached: int, generated: int, ttft_s: float | None, per_token_s: float | None,
        speculative: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """Record one finished generation (`speculative`: its `stats.extra["speculative"]`, if any)."""
        if speculative:
            self.draft_proposed.inc(int(speculative.get("draft_tokens_proposed", 0)))
            self.draft_accepted.inc(int(speculative.get("draft_tokens_accepted", 0)))
        self.prompt_tokens.inc(prompt)
        self.cached_tokens.inc(cached)
        self.generated_tokens.inc(generated)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        if per_token_s is not None:
            self.token_latency.observe(per_token_s)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return bytes(generate_latest(self.registry))
