"""A migration from a legacy lab system as a procedure with proof.

``plan`` (inventory, nothing stored) → ``run`` (staged sealed, imported through the vault,
resumable) → ``verify`` (every source unit reconciled with the vault) → ``certificate``
(signed) → ``erase`` (staging key destroyed; automatic after the deadline).
"""

from labvault.migrate.plan import Plan, SourcePlan, load_plan, make_plan
from labvault.migrate.run import run
from labvault.migrate.verify import Reconciliation, verify

__all__ = ["Plan", "Reconciliation", "SourcePlan", "load_plan", "make_plan", "run", "verify"]
