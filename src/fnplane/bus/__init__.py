"""The bus modules every plane shares: connecting to NATS, the one owner of the bus topology, and the
buckets. With `invocation/bus.py` (the gateway's request bus), `compute/worker/bus.py` (the worker's)
and `compute/bus.py` (the agent's), these are the only modules that import `nats` (import-linter)."""
