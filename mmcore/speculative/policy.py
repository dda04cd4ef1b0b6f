"""How many drafts to verify next: measured call costs and the recent acceptance rate decide.

With per-draft acceptance rate a, a call verifying k drafts emits on average
E(k) = 1 + a + ... + a^k tokens and costs c(k + 1), the measured time of a (k + 1)-row decoder
call. Speculation pays when max_k E(k) / c(k + 1) beats 1 / c(1); otherwise it is switched off for
a stretch of plain decoding that doubles each time it is confirmed.
"""

from __future__ import annotations

import statistics
from collections import deque

__all__ = ["CallCosts", "DraftPolicy"]

#: Timed calls kept per row count (their median is the cost).
_SAMPLES = 9
#: Plain-decoding tokens before speculation is tried again, the first time and at most.
_FIRST_PAUSE, _MAX_PAUSE = 16, 512


class CallCosts:
    """Median seconds of recent decoder calls by row count, measured on the program itself."""

    def __init__(self) -> None:
        self._times: dict[int, deque[float]] = {}

    def record(self, rows: int, seconds: float) -> None:
        self._times.setdefault(rows, deque(maxlen=_SAMPLES)).append(seconds)

    def measured(self, rows: int) -> float | None:
        times = self._times.get(rows)
        return statistics.median(times) if times else None

    def cost(self, rows: int) -> float | None:
        """The measured cost of a `rows`-row call, else interpolated (linearly) between the measured
        row counts around it, or extrapolated from the two widest below it; None with fewer than
        two measured row counts."""
        exact = self.measured(rows)
        if exact is not None:
            return exact
        below = sorted(r for r in self._times if r < rows)
        above = [r for r in self._times if r > rows]
        if above and below:
            lo, hi = below[-1], min(above)
        elif len(below) >= 2:
            lo, hi = below[-2], below[-1]
        else:
            return None
        c_lo, c_hi = self.measured(lo), self.measured(hi)
        assert c_lo is not None and c_hi is not None
        return c_lo + (c_hi - c_lo) * (rows - lo) / (hi - lo)

    def curve(self) -> dict[int, float]:
        """Measured median seconds by row count."""
        return {rows: statistics.median(t) for rows, t in sorted(self._times.items()) if t}


class DraftPolicy:
    """Chooses k (0: a plain one-token step) from the acceptance rate and the call costs.

    The acceptance rate is the fraction of examined drafts accepted (a draft after the first rejected
    one is never examined), decayed so that recent calls count most.
    """

    def __init__(self, max_k: int, costs: CallCosts, *, adaptive: bool = True, decay: float = 0.9) -> None:
        self.max_k = max_k
        self.costs = costs
        self.adaptive = adaptive
        self._decay = decay
        self._accepted, self._examined = 1.0, 2.0  # prior: a = 0.5
        self.pause = 0  # plain tokens left before speculation is tried again
        self._next_pause = _FIRST_PAUSE
        self.switch_offs = 0

    @property
    def acceptance(self) -> float:
        return self._accepted / self._examined

    def next_k(self, limit: int) -> int:
        """Drafts to verify in the next call, at most `limit` (0: decode plainly)."""
        limit = min(limit, self.max_k)
        if limit <= 0:
            return 0
        if not self.adaptive:
            return limit
        if self.pause > 0:
            return 0
        c1 = self.costs.measured(1)
        if c1 is None:
            return 0  # measure a plain call first
        if self.costs.cost(limit + 1) is None:
            return limit  # measure a wide call once; other widths are interpolated
        a = self.acceptance
        best_k, best_rate = 0, 1.0 / c1
        expected = 1.0
        for k in range(1, limit + 1):
            expected += a**k
            cost = self.costs.cost(k + 1)
            if cost is not None and expected / cost > best_rate:
                best_k, best_rate = k, expected / cost
        if best_k == 0:
            self.switch_off()
        return best_k

    def switch_off(self) -> None:
        """Decode plainly for a while (longer each time speculation is found not to pay)."""
        self.pause = self._next_pause
        self._next_pause = min(self._next_pause * 2, _MAX_PAUSE)
        self.switch_offs += 1
        self._accepted, self._examined = 1.0, 2.0  # judge afresh when trying again

    def plain_tokens(self, n: int) -> None:
        """`n` tokens were decoded plainly."""
        self.pause = max(0, self.pause - n)

    def update(self, proposed: int, accepted: int) -> None:
        """A call verified `proposed` drafts and accepted the first `accepted`."""
        if proposed <= 0:
            return
        examined = accepted + (1 if accepted < proposed else 0)
        self._accepted = self._accepted * self._decay + accepted
        self._examined = self._examined * self._decay + examined
        if accepted == proposed:
            self._next_pause = _FIRST_PAUSE  # speculation pays again: a future pause starts short
