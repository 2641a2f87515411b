"""Whether a claimed run may be taken from the executor holding it (claims and the sweeper).

A lease lapses when its executor stopped renewing it — or when nobody could answer the
renewals: this requester was down, cut off from the broker, or failing on its store. A run
whose holder is gone from the broker (``shoal.liveness``) is taken at once, live lease or
not. A run whose holder is alive is taken only once its lease lapsed although the holder had
``grace`` seconds of this requester answering to renew it: until then it is kept, and the
holder's next renewal extends it (``shoal.requester.store.claims.renew``). The grace starts
again whenever renewals may have gone unanswered (:meth:`Holders.unheard`), so a requester
outage longer than a lease neither resends nor hands over the runs of live executors.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shoal.liveness import Alive


class Holders:
    """The take-over rule of one requester; :meth:`unheard` on every gap in its service."""

    def __init__(
        self, alive: Alive, grace: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._alive = alive
        self.grace = grace
        self._clock = clock
        self._since = clock()

    def unheard(self) -> None:
        """Renewals may have gone unanswered until now: live holders get the grace again."""
        self._since = self._clock()

    async def may_take(self, holder: str, lapsed: bool) -> bool:
        """Whether the run ``holder`` holds may go to another attempt: its lease lapsed and
        the grace is over, or ``holder`` is gone."""
        if lapsed and self._clock() - self._since >= self.grace:
            return True
        return not await self._alive(holder)
