"""Core: what every layer uses - clock, the object registry (every per-object fact), the one exception
root, the event models, configuration and observability.  Imports nothing above it."""
