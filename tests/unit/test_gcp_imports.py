"""The GCP provider imports each service SDK only when a client for it is first built (issue 17):
a replica whose GCP objects are all Buckets never holds the Cloud SQL SDK's proto-plus message
classes, and one that only checks a ProviderConfig's identity builds just the Storage client."""

from __future__ import annotations

import subprocess
import sys

# Builds the clients one by one against overridden endpoints (anonymous credentials, so nothing
# is fetched) and prints which service SDKs are loaded after each step.
PROBE = """
import sys
from kumo.providers.base import ProviderSettings
from kumo.providers.gcp.session import SERVICE_SQLADMIN, SERVICE_STORAGE, client_cache

def loaded():
    return [name for name in ("google.cloud.storage", "google.cloud.sqladmin_v1beta4") if name in sys.modules]

print(loaded())
settings = ProviderSettings(
    provider="gcp",
    project="p",
    endpoints={SERVICE_SQLADMIN: "http://127.0.0.1:1", SERVICE_STORAGE: "http://127.0.0.1:1"},
)
clients = client_cache()
clients.client(settings, SERVICE_STORAGE)
print(loaded())
clients.client(settings, SERVICE_SQLADMIN)
print(loaded())
"""


def test_each_gcp_service_sdk_is_imported_with_its_first_client():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    at_import, after_storage, after_sqladmin = done.stdout.splitlines()[:3]
    assert at_import == "[]", done.stdout
    assert after_storage == "['google.cloud.storage']", done.stdout
    assert after_sqladmin == "['google.cloud.storage', 'google.cloud.sqladmin_v1beta4']", done.stdout
