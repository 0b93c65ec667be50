"""`labvault simulate`: a synthetic laboratory replayed through the real API on loopback, with
attacks injected, to measure what the watcher (`labvault.watch`) catches, how soon, what the
attackers got before, and how many false alerts the normal workload raises.

`lab` builds the laboratory, `workload` is the normal day, `attacks` the scripted attackers,
`runner` serves the app and drives the shared clock, `report` sums it up; `simulate.run` ties
them together and `command` is the CLI. The run is imported on first use: the CLI lists the
command without loading the web framework the run serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labvault.simulator.simulate import Options, Outcome, run


def __getattr__(name: str) -> Any:
    if name in ("Options", "Outcome", "run"):
        from labvault.simulator import simulate
        return getattr(simulate, name)
    raise AttributeError(f"module 'labvault.simulator' has no attribute {name!r}")

__all__ = ["Options", "Outcome", "run"]
