"""Inbound: the incremental cycle of one object (window maths, field selection, formula refresh,
deletes and reconciliation)."""
