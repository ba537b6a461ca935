"""The strict S3 layer's pure rules (testbed/strictaws/s3.py): which CreateBucket S3 refuses at
which regional endpoint, and which bucket policies S3 calls public."""

from __future__ import annotations

import json

import pytest
from kumo.testbed.strictaws.s3 import is_public_policy, location_refusal


@pytest.mark.parametrize(
    ("region", "location", "code", "message_start"),
    [
        pytest.param("us-east-1", "", None, None, id="us-east-1-without-constraint"),
        pytest.param("us-east-1", "us-east-1", "InvalidLocationConstraint", "The specified", id="us-east-1-named"),
        pytest.param(
            "us-east-1", "eu-west-1", "IllegalLocationConstraintException", "The eu-west-1", id="from-us-east-1"
        ),
        pytest.param("eu-west-1", "eu-west-1", None, None, id="own-region"),
        pytest.param("eu-west-1", "", "IllegalLocationConstraintException", "The unspecified", id="none-elsewhere"),
        pytest.param("eu-west-1", "ap-south-1", "IllegalLocationConstraintException", "The ap-south-1", id="other"),
    ],
)
def test_create_bucket_takes_only_the_endpoint_region(region, location, code, message_start) -> None:
    """A regional endpoint creates buckets in its own region only; us-east-1 takes no constraint."""
    refusal = location_refusal(region, location)
    if code is None:
        assert refusal is None
        return
    assert refusal is not None and refusal.status == 400 and refusal.code == code
    assert refusal.message.startswith(message_start)


def policy(statement: dict) -> bytes:
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}).encode()


@pytest.mark.parametrize(
    ("document", "public"),
    [
        pytest.param(policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}), True, id="anyone"),
        pytest.param(policy({"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "s3:*"}), True, id="any-aws"),
        pytest.param(
            policy({"Effect": "Allow", "Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}),
            False,
            id="narrowed-by-condition",
        ),
        pytest.param(policy({"Effect": "Deny", "Principal": "*", "Action": "s3:*"}), False, id="deny"),
        pytest.param(
            policy({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}), False, id="one-account"
        ),
        pytest.param(b"not json", False, id="unparseable"),
    ],
)
def test_public_policy_is_an_unconditioned_allow_to_everyone(document: bytes, public: bool) -> None:
    """S3's "meaning of public", as far as the layer needs it."""
    assert is_public_policy(document) is public
