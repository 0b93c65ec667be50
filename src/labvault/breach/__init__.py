"""Breach response: incidents, their scope from the audit log, notices, the exposure check."""
