"""`labvault simulate`: a synthetic laboratory replayed through the real API on loopback, with
attacks injected, to measure what the watcher (`labvault.watch`) catches, how soon, what the
attackers got before, and how many false alerts the normal workload raises.

`lab` builds the laboratory, `workload` is the normal day, `attacks` the scripted attackers,
`runner` serves the app and drives the shared clock, `report` sums it up; `simulate.run` ties
them together and `command` is the CLI.
"""

from labvault.simulator.simulate import Options, Outcome, run

__all__ = ["Options", "Outcome", "run"]
