"""Progress lines of a relaxation on stderr."""

from __future__ import annotations

import sys
import time

from eqv2.simulate.relax.running import Running

__all__ = ["Progress"]


class Progress:
    """Progress lines on stderr: when structures finish, at most once a second."""

    def __init__(self, total: int) -> None:
        self.total, self.finished, self.converged, self.failed = total, 0, 0, 0
        self.last = 0.0

    def done(self, converged: bool, error: str | None) -> None:
        self.finished += 1
        self.converged += int(converged)
        self.failed += int(error is not None)

    def tick(self, running: list[Running]) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            return
        self.last = now
        n_atoms = sum(len(r.atoms) for r in running)
        print(
            f"relax: {self.finished}/{self.total} done ({self.converged} converged, "
            f"{self.failed} failed); {len(running)} running ({n_atoms} atoms)",
            file=sys.stderr,
            flush=True,
        )
