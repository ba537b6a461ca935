"""Development tooling: a local Kubernetes control plane and emulated clouds for tests and the demo.

Nothing here is imported by the controller at run time."""
