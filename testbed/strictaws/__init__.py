"""moto made as strict as AWS: the test bed's AWS emulator.

moto is kinder than AWS in the ways that break controllers: RDS instances are `available` at once,
every modification applies at once, new S3 buckets get none of the 2023 defaults, and any
LocationConstraint is accepted from any region. This package runs moto's own server in a process
the test bed controls and adds those behaviours back, each with the public source it is taken
from (see docs/testbed.md).

Each service layer is a module with `install(timings)`, which patches moto's models in this
process, and `wrap(app)`, a WSGI middleware for what must be judged from the request itself (the
signing region, say). `python -m kumo.testbed.strictaws --port N` starts the server.
"""
