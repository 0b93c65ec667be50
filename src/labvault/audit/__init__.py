"""The audit trail of every vault call."""
