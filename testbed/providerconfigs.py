"""The examples' ProviderConfigs (examples/<cloud>/providerconfig.yaml), aimed at the test bed's
emulators: the same documents with the bed's credentials, region, project and `spec.endpoints`.

One source for `kumo dev up` (which installs them so the examples apply unchanged), the demo and
the e2e probes. Light on purpose: no cloud SDK is imported here, so `kumo dev up` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example_provider_config(cloud: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cloud's example Secret and ProviderConfig, renamed (the Secret after the config)."""
    documents = list(yaml.safe_load_all((EXAMPLES / cloud / "providerconfig.yaml").read_text()))
    secret = next(d for d in documents if d["kind"] == "Secret")
    config = next(d for d in documents if d["kind"] == "ProviderConfig")
    secret["metadata"]["name"] = f"{name}-credentials"
    config["metadata"]["name"] = name
    config["spec"]["credentials"]["secretRef"]["name"] = f"{name}-credentials"
    return secret, config


def aws_provider_config(aws: dict[str, Any], name: str, region: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The AWS example with moto's endpoint and fixed key pair (`aws` is the bed env's "aws"
    section); `region` defaults to the bed's. moto accepts any key, but boto3 signs every call,
    so the Secret must hold one."""
    secret, config = example_provider_config("aws", name)
    secret["stringData"] = {
        "aws_access_key_id": aws["access_key_id"],
        "aws_secret_access_key": aws["secret_access_key"],
    }
    config["spec"]["region"] = region or aws["region"]
    endpoint = aws["endpoint"]
    config["spec"]["endpoints"] = {"rds": endpoint, "s3": endpoint, "sts": endpoint}
    return secret, config


def gcp_provider_config(gcp: dict[str, Any], name: str) -> dict[str, Any]:
    """The GCP example with the emulators' endpoints and project (`gcp` is the bed env's "gcp"
    section). The emulators take anonymous calls, so the credentials come from the controller's
    environment and no Secret is needed."""
    _, config = example_provider_config("gcp", name)
    project = gcp["project"]
    config["spec"]["project"] = project
    config["spec"]["region"] = gcp["region"]
    config["spec"]["credentials"] = {"source": "Environment"}
    config["spec"]["providerOptions"]["databases"]["privateNetwork"] = f"projects/{project}/global/networks/default"
    config["spec"]["endpoints"] = {"sqladmin": gcp["sqladmin_endpoint"], "storage": gcp["storage_endpoint"]}
    return config


def emulator_documents(env: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cloud's Secret (when it needs one) and ProviderConfig, each named after its cloud
    (`aws`, `gcp`), as the examples' `providerConfigRef`s expect."""
    aws_secret, aws_config = aws_provider_config(env["aws"], "aws")
    return [aws_secret, aws_config, gcp_provider_config(env["gcp"], "gcp")]
