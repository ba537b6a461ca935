"""The GCP provider's identity check: does a provider config's project answer its credentials?

Google has no call like AWS's GetCallerIdentity that every principal may make, so the check is a
read the credentials must be allowed to make anyway: one Cloud Storage buckets.list of the
config's project with maxResults=1 (permission storage.buckets.list, held by the roles that let
kumo manage buckets; https://cloud.google.com/storage/docs/json_api/v1/buckets/list). It proves at
once that the credentials load, that a token is granted, that the project exists and that its
Storage API answers. The call goes through the provider's `ServiceCaller`, so it is paced and
counted like every other call, and a refusal carries Google's own message.
"""

from __future__ import annotations

import json
from typing import Any

from kumo.providers.base import CallHooks, Identity, ProviderSettings
from kumo.providers.plumbing import ClientCache

from .session import CALL_TIMEOUT, KEY_CREDENTIALS_JSON, KEY_DOCUMENT, SERVICE_STORAGE, ServiceCaller

OPERATION = "buckets.list"


async def check_identity(clients: ClientCache, settings: ProviderSettings, hooks: CallHooks | None) -> Identity:
    """One buckets.list (maxResults=1) of the config's project; `ProviderError` when refused."""
    caller = ServiceCaller(clients, settings, SERVICE_STORAGE, hooks or CallHooks())
    project = caller.project

    def first_bucket(client: Any) -> list[str]:
        listed = client.list_buckets(max_results=1, project=project, retry=None, timeout=CALL_TIMEOUT)
        return [bucket.name for bucket in listed]

    await caller.call(OPERATION, first_bucket)
    account = principal(settings, caller.endpoint_override)
    return Identity(account, f"Cloud Storage {OPERATION} of project {project}: allowed to {account}")


def principal(settings: ProviderSettings, endpoint_override: str) -> str:
    """Who the calls are made as, in words: the service account of the key in the credentials
    Secret, anonymous for an overridden endpoint without a key (the emulators), else Application
    Default Credentials (Workload Identity, whose account the SDK only learns from the metadata
    server). Called after a successful call, so a key present here has already loaded."""
    document = settings.credentials.get(KEY_DOCUMENT) or settings.credentials.get(KEY_CREDENTIALS_JSON)
    if document:
        return f"service account {json.loads(document).get('client_email', '?')}"
    if endpoint_override:
        return f"anonymous caller (endpoint {endpoint_override})"
    return "Application Default Credentials of the controller"
