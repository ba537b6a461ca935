"""gcp-storage-emulator made as strict as Cloud Storage: the test bed's GCS emulator.

The emulator is kinder than GCS in the ways that break controllers: it knows one project, so a
name held by someone else never answers 409 "not available"; it lists every bucket in one page
whatever the project or page size; it ignores the settings sent with buckets.insert and replaces
labels and iamConfiguration whole on PATCH; and it takes any number of metadata updates a second.
This package runs the emulator's own server in a process the test bed controls and puts GCS's
behaviour back by replacing its bucket handlers (`buckets.install`), each behaviour with the
public source it is taken from (see docs/testbed.md, "GCP: Cloud Storage").

`python -m kumo.testbed.strictgcs --port N` starts the server.
"""
