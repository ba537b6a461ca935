"""The kopf wiring and the generic reconciler. Never imports a cloud SDK."""
