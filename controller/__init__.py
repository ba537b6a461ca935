"""The controller: `core/` (the reconcile decisions and their order) and `runtime/` (kopf wiring,
queue, cache, sweeps, leader election, metrics) that drives it. Never imports a cloud SDK."""
