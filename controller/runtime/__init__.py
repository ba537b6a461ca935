"""The runtime that drives the reconcile core: kopf wiring, the work queue, the compact object
cache, drift sweeps, leader election, rate limiting, metrics and the Kubernetes client."""
