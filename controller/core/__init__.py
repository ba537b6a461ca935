"""The reconcile core: the decisions kumo makes about one object, and the order it makes them in.

Pure where it can be (ownership, drift verdict, error disposition, naming), and otherwise talking
to Kubernetes only through the narrow `Kube` interface and to clouds only through the provider
contract. It never imports the runtime (kopf wiring, queue, cache, sweeps, leader election), so
`kumo plan` and `kumo status` can call the same functions the controller calls.
"""
