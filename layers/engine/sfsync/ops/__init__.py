"""Ops: what operators run against a deployed engine (verify)."""
