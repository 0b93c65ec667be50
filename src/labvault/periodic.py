"""Work that `labvault serve` repeats on its own: alert escalation, delivery of notices, the
exposure checks' lookups, retention. One daemon thread per job; a run that fails is logged (its
exception's type only: never a message that could carry a value) and the next run comes anyway.
`stop` runs the job once more when asked to (work accepted must not be dropped on a clean
shutdown) and waits for the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("labvault")


class Periodic:
    def __init__(self, name: str, every: float, run: Callable[[], object], *,
                 run_on_stop: bool = False) -> None:
        self.name, self._every, self._job = name, every, run
        self._run_on_stop = run_on_stop
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"labvault-{name}", daemon=True)

    def __repr__(self) -> str:
        return f"Periodic({self.name!r}, every={self._every})"

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def run_once(self) -> None:
        try:
            self._job()
        except Exception as exc:  # noqa: BLE001 - the job must outlive one bad run
            log.error("%s failed: %s", self.name, type(exc).__name__)

    def _loop(self) -> None:
        while not self._stopped.wait(self._every):
            self.run_once()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        if self._run_on_stop:
            self.run_once()


__all__ = ["Periodic"]
