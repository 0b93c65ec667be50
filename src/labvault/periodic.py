"""Work that `labvault serve` repeats on its own: alert escalation, delivery of notices, the
exposure checks' lookups, retention. One daemon thread per job; a run that fails is logged (its
exception's type only: never a message that could carry a value) and the next run comes anyway.
`stop` runs the job once more when asked to (work accepted must not be dropped on a clean
shutdown) and waits for the thread. With `jitter` (a fraction, below 1), each wait is drawn
anew between ``every * (1 - jitter)`` and ``every * (1 + jitter)``: a job whose runs must not
be predictable from outside (the exposure checks' lookups) does not run on a fixed beat.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

log = logging.getLogger("labvault")


class Periodic:
    def __init__(self, name: str, every: float, run: Callable[[], object], *,
                 run_on_stop: bool = False, jitter: float = 0.0) -> None:
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter is a fraction of the interval, from 0 to below 1")
        self.name, self._every, self._job = name, every, run
        self._jitter = jitter
        self._random = random.SystemRandom()
        self._run_on_stop = run_on_stop
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"labvault-{name}", daemon=True)

    def __repr__(self) -> str:
        jitter = f", jitter={self._jitter}" if self._jitter else ""
        return f"Periodic({self.name!r}, every={self._every}{jitter})"

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def run_once(self) -> None:
        try:
            self._job()
        except Exception as exc:  # noqa: BLE001 - the job must outlive one bad run
            log.error("%s failed: %s", self.name, type(exc).__name__)

    def delay(self) -> float:
        """The wait before the next run: `every`, or a fresh draw within the jitter."""
        if not self._jitter:
            return self._every
        return self._every * self._random.uniform(1.0 - self._jitter, 1.0 + self._jitter)

    def _loop(self) -> None:
        while not self._stopped.wait(self.delay()):
            self.run_once()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        if self._run_on_stop:
            self.run_once()


__all__ = ["Periodic"]
