"""kumo: cloud databases and buckets declared as Kubernetes objects.

The distribution is organised by the architecture's boxes, each a top-level folder installed as
a subpackage here: `kumo.controller` (controller/), `kumo.providers` (providers/) and
`kumo.testbed` (testbed/, development tooling only: local control plane and emulators).
"""

API_GROUP = "kumo.dev"
API_VERSION = "v1alpha1"
