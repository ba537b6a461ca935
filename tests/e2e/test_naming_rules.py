"""Names the clouds refuse: the strict bed refuses them too, and kumo never derives one.

First the emulators, through the clients any user would use (boto3, google-cloud-storage, the
Cloud SQL Admin client): each refuses the names its cloud refuses, with the cloud's error, and
accepts every name kumo derives for many random valid namespaces and names, the clouds' reserved
words spliced in (the generator and the documented rules are those of
tests/unit/test_external_names.py). Then kumo end to end: a Bucket in a namespace holding
"google" becomes Ready on both clouds under a name both accept. Sources in docs/testbed.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.sqladmin_v1beta4 import SqlInstancesServiceClient
from kumo.controller.core.resources import derived_external_name
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.probes import probe_for

from ..conftest import _fresh_namespace
from ..unit.test_external_names import _derivation_before_issue_13, random_pairs, refusals
from .conftest import GROUP, PLURALS, VERSION, Kumo, condition, example

pytestmark = pytest.mark.e2e

# A region and projects no other test uses, so the instances and buckets made here are counted
# by nobody else (the bed lives for the whole session).
RDS_REGION = "ap-southeast-2"
CLUSTER_ID = ControllerProcess.cluster_id  # what the bed's controller hashes into derived names
PAIRS = 100  # random pairs per run, plus the named adversarial ones random_pairs always adds


def derived_names() -> list[str]:
    names = [derived_external_name(ns, name, CLUSTER_ID) for ns, name in random_pairs(seed=1313, count=PAIRS)]
    assert all(not refusals(name) for name in names)  # the documented rules, as in the unit test
    return sorted(set(names))


@pytest.fixture
def s3(testbed) -> Any:
    """An S3 client in the bed's region, in an account of its own (an assumed role's)."""
    env = testbed.env["aws"]
    common = {
        "endpoint_url": env["endpoint"],
        "region_name": env["region"],
        "aws_access_key_id": env["access_key_id"],
        "aws_secret_access_key": env["secret_access_key"],
    }
    role = "arn:aws:iam::210987654321:role/kumo-naming"
    found = boto3.client("sts", **common).assume_role(RoleArn=role, RoleSessionName="naming")["Credentials"]
    # boto3 takes a name ending "--x-s3" for a directory bucket and would first ask for an S3
    # Express session (CreateSession, answered NoSuchBucket); without it the CreateBucket itself
    # reaches the bed.
    return boto3.client(
        "s3",
        config=Config(s3={"disable_s3_express_session_auth": True}),
        **{
            **common,
            "aws_access_key_id": found["AccessKeyId"],
            "aws_secret_access_key": found["SecretAccessKey"],
            "aws_session_token": found["SessionToken"],
        },
    )


@pytest.fixture
def rds(testbed) -> Any:
    env = testbed.env["aws"]
    return boto3.client(
        "rds",
        endpoint_url=env["endpoint"],
        region_name=RDS_REGION,
        aws_access_key_id=env["access_key_id"],
        aws_secret_access_key=env["secret_access_key"],
    )


@pytest.fixture
def gcs(testbed) -> storage.Client:
    """A storage client in a project of its own."""
    return storage.Client(
        project=f"naming-{uuid.uuid4().hex[:8]}",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=testbed.env["gcp"]["storage_endpoint"]),
    )


@pytest.fixture
def cloud_sql(testbed) -> tuple[SqlInstancesServiceClient, str]:
    """The Cloud SQL Admin client and a project of its own."""
    client = SqlInstancesServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=testbed.env["gcp"]["sqladmin_endpoint"]),
    )
    return client, f"naming-{uuid.uuid4().hex[:8]}"


def create_rds_instance(rds: Any, identifier: str) -> dict[str, Any]:
    # MySQL: the bed backs no MySQL server, so a name check costs no engine.
    return dict(
        rds.create_db_instance(
            DBInstanceIdentifier=identifier,
            Engine="mysql",
            DBInstanceClass="db.t3.micro",
            MasterUsername="admin",
            MasterUserPassword="naming-Passw0rd",
            AllocatedStorage=20,
        )["DBInstance"]
    )


def insert_cloud_sql_instance(cloud_sql: tuple[SqlInstancesServiceClient, str], name: str) -> Any:
    client, project = cloud_sql
    body = {"name": name, "database_version": "MYSQL_8_0", "region": "us-central1", "settings": {"tier": "db-f1-micro"}}
    return client.insert(request={"project": project, "body": body})


def instance_names(cloud_sql: tuple[SqlInstancesServiceClient, str]) -> set[str]:
    client, project = cloud_sql
    return {item.name for page in client.list(request={"project": project}).pages for item in page.items}


def s3_refusal(s3: Any, name: str) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        s3.create_bucket(Bucket=name)
    return {"status": refused.value.response["ResponseMetadata"]["HTTPStatusCode"], **refused.value.response["Error"]}


# ---------------------------------------------------------------------------- the emulators refuse


S3_REFUSES = [
    "xn--abc", "sthree-data", "sthree-configurator-x", "amzn-s3-demo-x", "data-s3alias", "data--ol-s3",
    "data.mrap", "data--x-s3", "data--table-s3", "192.168.5.4", "My-Bucket", "my_bucket", "a..b", "-ab", "ab",
    "x" * 64,
]  # fmt: skip


@pytest.mark.parametrize("name", S3_REFUSES)
def test_s3_refuses_a_bucket_name_s3_refuses(s3, name: str) -> None:
    """400 InvalidBucketName "The specified bucket is not valid.", and no bucket is made (moto
    alone took every one of these but the last two)."""
    refusal = s3_refusal(s3, name)

    assert refusal["status"] == 400 and refusal["Code"] == "InvalidBucketName", refusal
    assert refusal["Message"] == "The specified bucket is not valid."
    assert name not in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("identifier", ["1db", "db--x", "db-", "db_x", "a" * 64])
def test_rds_refuses_an_identifier_rds_refuses(rds, identifier: str) -> None:
    """InvalidParameterValue naming the identifier rules, and no instance is made."""
    with pytest.raises(ClientError) as refused:
        create_rds_instance(rds, identifier)

    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "DBInstanceIdentifier is not a valid identifier" in refused.value.response["Error"]["Message"]
    known = [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]]
    assert identifier.lower() not in known


@pytest.mark.parametrize("name", ["1db", "Db", "db_x", "db-", "a" * 99])
def test_cloud_sql_refuses_an_instance_name_cloud_sql_refuses(cloud_sql, name: str) -> None:
    """400, and the project has no instance."""
    with pytest.raises(google_errors.BadRequest):
        insert_cloud_sql_instance(cloud_sql, name)

    assert instance_names(cloud_sql) == set()


# ---------------------------------------------------------------------------- derived names pass


@pytest.fixture
def derived() -> list[str]:
    return derived_names()


def test_s3_accepts_every_derived_name(s3, derived: list[str]) -> None:
    """Each name kumo derives for the random and adversarial pairs is a bucket S3 creates."""
    try:
        refused = {}
        for name in derived:
            try:
                s3.create_bucket(Bucket=name)
            except ClientError as error:
                refused[name] = error.response["Error"]
        assert refused == {}
        assert {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]} >= set(derived)
    finally:
        for bucket in s3.list_buckets()["Buckets"]:
            s3.delete_bucket(Bucket=bucket["Name"])


def test_gcs_accepts_every_derived_name(gcs, derived: list[str]) -> None:
    try:
        refused = {}
        for name in derived:
            try:
                gcs.create_bucket(name)
            except google_errors.GoogleAPIError as error:
                refused[name] = str(error)
        assert refused == {}
        assert {bucket.name for bucket in gcs.list_buckets()} == set(derived)
    finally:
        for bucket in gcs.list_buckets():
            bucket.delete()


def test_rds_accepts_every_derived_name(rds, derived: list[str]) -> None:
    refused = {}
    for name in derived:
        try:
            assert create_rds_instance(rds, name)["DBInstanceIdentifier"] == name
        except ClientError as error:
            refused[name] = error.response["Error"]
    assert refused == {}


def test_cloud_sql_accepts_every_derived_name(cloud_sql, derived: list[str]) -> None:
    refused = {}
    for name in derived:
        try:
            insert_cloud_sql_instance(cloud_sql, name)
        except google_errors.GoogleAPIError as error:
            refused[name] = str(error)
    assert refused == {}
    assert instance_names(cloud_sql) == set(derived)


# ---------------------------------------------------------------------------- kumo end to end


@pytest.fixture
def google_namespace(kube_api) -> Iterator[str]:
    """A watched namespace whose name holds "google" (the controller watches t-*)."""
    yield from _fresh_namespace(kube_api, "t-google-apps")


def test_bucket_in_a_google_namespace_is_ready_under_a_name_the_cloud_accepts(
    kube_api, controller, google_namespace: str, target, probe
) -> None:
    """Before: the derived name held "google" and the Bucket stayed Synced=False InvalidSpec on
    GCS. Now it is Ready on both clouds, under the derived name every cloud accepts."""
    kumo = Kumo(kube_api, google_namespace, controller)
    secret, config = probe.provider_config(name=probe.cloud)
    kumo.core.create_namespaced_secret(google_namespace, secret)
    kumo.create(config)
    name = f"photos-{uuid.uuid4().hex[:6]}"

    kumo.create(example(probe.cloud, "Bucket", name))
    obj = kumo.wait_ready("Bucket", name)

    external = obj["status"]["atProvider"]["externalName"]
    assert external == derived_external_name(google_namespace, name, CLUSTER_ID)
    assert external.startswith("t-ggl-apps-") and refusals(external) == {}
    assert probe.bucket(external) is not None


def test_a_bucket_created_under_the_old_derivation_keeps_its_name(kube_api, controller, google_namespace, testbed):
    """An S3 bucket kumo made before names were neutralised ("t-google-apps-..." is valid on S3)
    stays this Bucket's: the name recorded in status wins over the new derivation, so kumo
    adopts nothing new and orphans nothing."""
    kumo = Kumo(kube_api, google_namespace, controller)
    probe = probe_for("aws", testbed.env)
    secret, config = probe.provider_config(name="aws")
    kumo.core.create_namespaced_secret(google_namespace, secret)
    kumo.create(config)
    name = f"photos-{uuid.uuid4().hex[:6]}"
    old = _derivation_before_issue_13(google_namespace, name, CLUSTER_ID)
    new = derived_external_name(google_namespace, name, CLUSTER_ID)
    assert old != new and "google" in old
    probe.s3.create_bucket(Bucket=old)  # what kumo before the change created
    # The object as it stood then: paused while its status is put back as kumo had written it.
    manifest = example("aws", "Bucket", name)
    manifest["metadata"]["annotations"] = {"kumo.dev/paused": "true"}
    kumo.create(manifest)
    kumo.wait_condition("Bucket", name, "Synced", "False")
    kumo.objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, google_namespace, PLURALS["Bucket"], name, {"status": {"atProvider": {"externalName": old}}}
    )

    kumo.patch("Bucket", name, {"metadata": {"annotations": {"kumo.dev/paused": None}}})
    obj = kumo.wait_ready("Bucket", name)

    assert obj["status"]["atProvider"]["externalName"] == old, condition(obj, "Synced")
    assert probe.bucket(old) is not None and probe.bucket(new) is None
