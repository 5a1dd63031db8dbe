"""Dispatch: the once-a-minute fan-out (due objects, the API economy: budget, back-off, change probe)."""
