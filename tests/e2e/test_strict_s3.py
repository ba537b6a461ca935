"""Strict S3 end to end: what real S3 does that plain moto did not, and what kumo makes of it.

Every scenario runs with the ProviderConfig in the bed's region (us-east-1, where S3 takes no
LocationConstraint) and in eu-west-1 (`aws-eu-west-1`), through the real API server, the
controller and the strict S3 layer (testbed/strictaws/s3.py; sources in docs/testbed.md).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from kumo.providers.aws.session import drop_account_host_prefix

from .conftest import condition, example, unique

TARGET_CLOUDS = ("aws",)  # S3 only: conftest runs these in both AWS regions
FAST_SWEEP = {"kumo.dev/sweep-interval": "5s"}
SWITCHES = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def s3_name(prefix: str) -> str:
    return f"kumo-{prefix}-{uuid.uuid4().hex[:10]}"


def bucket_manifest(name: str, **spec: Any) -> dict[str, Any]:
    manifest = example("aws", "Bucket", name)
    manifest["spec"].update(spec)
    return manifest


def located(probe, external: str) -> str:
    """The bucket's region as GetBucketLocation tells it (None means us-east-1)."""
    return probe.s3.get_bucket_location(Bucket=external)["LocationConstraint"] or "us-east-1"


def native_constraint(region: str) -> dict[str, Any]:
    """CreateBucket's arguments as S3 takes them at `region`'s endpoint (none for us-east-1)."""
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


def other_account(probe, account: str) -> dict[str, str]:
    """Credentials of another AWS account (moto files STS AssumeRole keys under the role's account)."""
    sts = boto3.client("sts", **probe.common)
    role = f"arn:aws:iam::{account}:role/kumo-e2e"
    found = sts.assume_role(RoleArn=role, RoleSessionName="kumo-e2e")["Credentials"]
    return {
        "aws_access_key_id": found["AccessKeyId"],
        "aws_secret_access_key": found["SecretAccessKey"],
        "aws_session_token": found["SessionToken"],
    }


def client_as(probe, service: str, credentials: dict[str, str]) -> Any:
    common = {**probe.common, **credentials}
    client = boto3.client(service, **common)
    if service == "s3control":
        client.meta.events.register_first("before-sign.s3-control", drop_account_host_prefix)
    return client


def refused(call, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as error:
        call(*args, **kwargs)
    return {"status": error.value.response["ResponseMetadata"]["HTTPStatusCode"], **error.value.response["Error"]}


def test_buckets_land_in_their_region_whether_location_is_set_or_not(kumo, probe, provider_config, testbed):
    """A Bucket without spec.location lands in the config's region, one with a location lands
    there: both through the region's own endpoint (S3 refuses any other), Ready with that region in
    status and Secret; a change reaches each; each is deleted from its region, and no call of
    kumo's needed S3's redirect to another region."""
    regions = {"omitted": probe.region, "us-east-1": "us-east-1", "ap-south-1": "ap-south-1"}
    names = {case: unique(f"loc-{case.split('-')[0]}") for case in regions}
    for case, name in names.items():
        spec = {} if case == "omitted" else {"location": case}
        kumo.create(bucket_manifest(name, deletionPolicy="Delete", **spec))
    externals = {}
    for case, name in names.items():
        obj = kumo.wait_ready("Bucket", name)
        external = externals[case] = obj["status"]["atProvider"]["externalName"]
        assert obj["status"]["atProvider"]["region"] == regions[case]
        assert located(probe, external) == regions[case]
        assert kumo.connection_secret("Bucket", name)["region"] == regions[case]
    abroad = names["ap-south-1"]
    kumo.patch("Bucket", abroad, {"spec": {"versioning": False}})
    there = boto3.client("s3", **{**probe.common, "region_name": "ap-south-1"})  # no redirect of ours either

    def versioning_off() -> bool:
        return there.get_bucket_versioning(Bucket=externals["ap-south-1"]).get("Status") == "Suspended"

    kumo.wait_for("versioning off in ap-south-1", versioning_off)
    for name in names.values():
        kumo.delete("Bucket", name)
    for case, name in names.items():
        kumo.wait_gone("Bucket", name)
        assert refused(probe.s3.head_bucket, Bucket=externals[case])["status"] == 404
    assert not [e for name in names.values() for e in kumo.events(name) if e.type == "Warning"]
    moto_log = next(p["log"] for p in testbed.env["processes"] if p["name"] == "moto")
    redirected = [line for line in Path(moto_log).read_text().splitlines() if '" 301 ' in line]
    assert not [line for line in redirected if any(f"/{external}" in line for external in externals.values())]


def test_s3_refuses_a_location_that_is_not_the_endpoint_region(probe):
    """The bed answers as S3's regional endpoints do (the request kumo used to send included)."""
    other = "ap-south-1" if probe.region != "ap-south-1" else "eu-west-1"
    wrong = refused(
        probe.s3.create_bucket, Bucket=s3_name("wrong"), CreateBucketConfiguration={"LocationConstraint": other}
    )
    assert (wrong["status"], wrong["Code"]) == (400, "IllegalLocationConstraintException")
    assert wrong["Message"] == (
        f"The {other} location constraint is incompatible for the region specific endpoint this request was sent to."
    )
    if probe.region == "us-east-1":
        named = refused(
            probe.s3.create_bucket,
            Bucket=s3_name("east"),
            CreateBucketConfiguration={"LocationConstraint": "us-east-1"},
        )
        assert (named["Code"], named["Message"]) == (
            "InvalidLocationConstraint",
            "The specified location-constraint is not valid",
        )
    else:
        unspecified = refused(probe.s3.create_bucket, Bucket=s3_name("none"))
        assert unspecified["Message"].startswith("The unspecified location constraint is incompatible")


def test_new_buckets_get_the_2023_defaults_and_kumo_stays_in_sync(kumo, probe, provider_config):
    """A new bucket has SSE-S3, all four Block Public Access switches and ACLs disabled; a Bucket
    that asks for no encryption is in sync with the SSE-S3 S3 always keeps."""
    plain = s3_name("plain")
    probe.s3.create_bucket(
        Bucket=plain,
        **native_constraint(probe.region),
    )
    rules = probe.s3.get_bucket_encryption(Bucket=plain)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = probe.s3.get_public_access_block(Bucket=plain)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(SWITCHES, True)
    ownership = probe.s3.get_bucket_ownership_controls(Bucket=plain)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]

    name = unique("noenc")
    kumo.create(bucket_manifest(name, encryption=False))
    obj = kumo.wait_ready("Bucket", name)
    external = obj["status"]["atProvider"]["externalName"]
    assert condition(obj, "InSync")["status"] == "True"
    rules = probe.s3.get_bucket_encryption(Bucket=external)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_a_name_another_account_holds_is_terminal_with_kumos_message(kumo, probe, provider_config):
    """Another account's bucket: CreateBucket answers BucketAlreadyExists, HeadBucket 403; the
    Bucket ends Synced=False saying the name is taken, and creates nothing."""
    taken = s3_name("taken")
    stranger = client_as(probe, "s3", other_account(probe, "111111111111"))
    stranger.create_bucket(
        Bucket=taken,
        **native_constraint(probe.region),
    )
    assert refused(probe.s3.head_bucket, Bucket=taken)["status"] == 403

    name = unique("taken")
    kumo.create(bucket_manifest(name, externalName=taken))
    obj = kumo.wait_condition("Bucket", name, "Synced", "False")
    message = condition(obj, "Synced")["message"]
    # kumo looks before it creates: HeadBucket's 403 already tells the name is another account's.
    assert "belongs to another account" in message and "spec.externalName" in message
    assert condition(obj, "Ready")["status"] != "True"
    assert refused(stranger.get_bucket_tagging, Bucket=taken)["Code"] == "NoSuchTagSet"  # kumo wrote nothing on it


def test_recreating_a_just_deleted_name_waits_out_operation_aborted(kumo, probe, provider_config):
    """S3 refuses a name deleted moments ago with OperationAborted; kumo retries and the new
    Bucket becomes Ready under the same name."""
    external = s3_name("again")
    first = unique("again")
    kumo.create(bucket_manifest(first, externalName=external, deletionPolicy="Delete"))
    kumo.wait_ready("Bucket", first)
    kumo.delete("Bucket", first)
    kumo.wait_gone("Bucket", first)

    second = unique("again")
    kumo.create(bucket_manifest(second, externalName=external))
    kumo.wait_ready("Bucket", second)
    assert probe.bucket(external) is not None
    aborted = [e for e in kumo.events(second) if "conflicting conditional operation" in (e.message or "")]
    assert aborted, "the bed should have answered the first CreateBucket with OperationAborted"


def test_public_access_withheld_by_the_account_setting_is_reported(kumo, probe):
    """publicAccess: true while the account-level Block Public Access is on: S3 keeps the bucket
    private (a public policy is refused) and kumo says so in InSync and status.drift; once the
    account setting is off, the bucket is in sync."""
    credentials = other_account(probe, "222222222222")
    control = client_as(probe, "s3control", credentials)
    control.put_public_access_block(
        AccountId="222222222222", PublicAccessBlockConfiguration=dict.fromkeys(SWITCHES, True)
    )
    name = unique("public")
    try:
        config_name = "aws-account-bpa"
        secret, config = probe.provider_config(name=config_name)
        secret["stringData"] = credentials
        kumo.core.create_namespaced_secret(kumo.namespace, secret)
        kumo.create(config)
        manifest = bucket_manifest(name, publicAccess=True)
        manifest["metadata"]["annotations"] = dict(FAST_SWEEP)
        manifest["spec"]["providerConfigRef"]["name"] = config_name
        kumo.create(manifest)
        obj = kumo.wait_condition("Bucket", name, "InSync", "False")
        assert condition(obj, "Ready")["status"] == "True"
        assert (
            "account-level S3 Block Public Access setting overrides spec.publicAccess"
            in (condition(obj, "InSync")["message"])
        )
        assert [d["field"] for d in obj["status"]["drift"]] == ["publicAccessBlock"]
        external = obj["status"]["atProvider"]["externalName"]
        owner = client_as(probe, "s3", credentials)
        assert refused(owner.get_public_access_block, Bucket=external)["Code"] == "NoSuchPublicAccessBlockConfiguration"
        public = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{external}/*",
                }
            ],
        }
        blocked = refused(owner.put_bucket_policy, Bucket=external, Policy=json.dumps(public))
        assert (blocked["status"], blocked["Code"]) == (403, "AccessDenied")
        assert "BlockPublicPolicy" in blocked["Message"]
    finally:
        control.delete_public_access_block(AccountId="222222222222")
    kumo.wait_condition("Bucket", name, "InSync", "True", timeout=30)
