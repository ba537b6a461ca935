"""The strict S3 layer: moto's S3 made to answer as Amazon S3 does where controllers break.

What moto leaves out, each taken from AWS's documentation or from public bug reports (the full
list with links is in docs/testbed.md, "AWS: S3"):

- New buckets get the April 2023 defaults: SSE-S3 default encryption, all four Block Public
  Access switches on, Object Ownership `BucketOwnerEnforced`; DeleteBucketEncryption goes back
  to SSE-S3 rather than to "no encryption".
- The endpoint is regional: CreateBucket's LocationConstraint must name the region the request
  was signed for, and none is allowed for us-east-1 (`InvalidLocationConstraint`). Any other
  call on a bucket of another region answers 301 `PermanentRedirect` naming the bucket's region
  (GetBucketLocation excepted: it answers from anywhere).
- ListBuckets names each bucket's region (`BucketRegion`), as S3 has since 2024.
- CreateBucket refuses a name outside S3's general purpose bucket naming rules (reserved
  prefixes and suffixes, IP-address forms, characters, length) with 400 `InvalidBucketName`.
- Bucket names are global: another account's bucket answers CreateBucket with 409
  `BucketAlreadyExists` (moto does this) and every other call with 403 (moto serves it).
- 409 `OperationAborted` when a bucket name is created again too soon after its deletion, and
  when a bucket configuration write arrives while another one on the same bucket is running.
- An account-level Block Public Access setting (S3 Control PutPublicAccessBlock) keeps every
  bucket of the account private whatever its own setting: a public bucket policy is refused.

`install` patches moto's S3 model (the defaults); `wrap` adds a WSGI middleware for everything
judged from the request (signing region, account, timing). The bed's endpoint stands for a
regional endpoint such as s3.eu-west-1.amazonaws.com: the region is the SigV4 credential scope's.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .timings import Timings

US_EAST_1 = "us-east-1"
SSE_S3 = "AES256"
OWNERSHIP_ENFORCED = "BucketOwnerEnforced"
S3_CONTROL_PATH = "/v20180820/"
CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
LOCATION_CONSTRAINT = re.compile(rb"<LocationConstraint>\s*([^<\s]*)\s*</LocationConstraint>")
ACCOUNT_HEADER = "HTTP_X_MOTO_ACCOUNT_ID"

# Real S3's own words (see docs/testbed.md for where each was seen).
MESSAGE_UNSPECIFIED = (
    "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to."
)
MESSAGE_INCOMPATIBLE = (
    "The {location} location constraint is incompatible for the region specific endpoint this request was sent to."
)
MESSAGE_INVALID_LOCATION = "The specified location-constraint is not valid"
MESSAGE_INVALID_NAME = "The specified bucket is not valid."
# AWS, "General purpose bucket naming rules"
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
NAME_CHARACTERS = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
RESERVED_PREFIXES = ("xn--", "sthree-", "sthree-configurator", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
MESSAGE_REDIRECT = (
    "The bucket you are attempting to access must be addressed using the specified endpoint. "
    "Please send all future requests to this endpoint."
)
MESSAGE_CONFLICT = (
    "A conflicting conditional operation is currently in progress against this resource. Please try again."
)
MESSAGE_ACCESS_DENIED = "Access Denied"
MESSAGE_PUBLIC_POLICY_BLOCKED = (
    "User: arn:aws:iam::{account}:root is not authorized to perform: s3:PutBucketPolicy on resource: "
    '"arn:aws:s3:::{bucket}" because public policies are blocked by the BlockPublicPolicy block public '
    "access setting."
)


# ---------------------------------------------------------------------------- the model: defaults


def install(timings: Timings) -> None:
    """Give every new bucket the 2023 defaults, and make DeleteBucketEncryption fall back to SSE-S3.

    AWS, "Default encryption FAQ" / DeleteBucketEncryption API reference: since 5 January 2023
    every bucket has SSE-S3 and deleting the configuration "resets the default encryption for the
    bucket as SSE-S3". AWS News Blog, "Heads-Up: Amazon S3 Security Changes Are Coming in April
    of 2023": new buckets get all four Block Public Access settings on and ACLs disabled
    (Object Ownership BucketOwnerEnforced).
    """
    from moto.s3.models import PublicAccessBlock, S3Backend

    if getattr(S3Backend.create_bucket, "_kumo_strict", False):
        return
    original_create = S3Backend.create_bucket
    original_delete_encryption = S3Backend.delete_bucket_encryption

    def create_bucket(self: Any, bucket_name: str, region_name: str, *args: Any, **kwargs: Any) -> Any:
        bucket = original_create(self, bucket_name, region_name, *args, **kwargs)
        bucket.encryption = default_encryption()
        bucket.public_access_block = PublicAccessBlock(True, True, True, True)
        bucket.ownership_rule = OWNERSHIP_ENFORCED  # type: ignore[assignment]  # moto stores the name
        return bucket

    def delete_bucket_encryption(self: Any, bucket_name: str) -> None:
        original_delete_encryption(self, bucket_name)
        self.get_bucket(bucket_name).encryption = default_encryption()

    create_bucket._kumo_strict = True  # type: ignore[attr-defined]
    S3Backend.create_bucket = create_bucket  # type: ignore[method-assign]
    S3Backend.delete_bucket_encryption = delete_bucket_encryption  # type: ignore[method-assign]


def default_encryption() -> dict[str, Any]:
    """SSE-S3 in moto's stored shape (the parsed ServerSideEncryptionConfiguration)."""
    return {"Rule": {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": SSE_S3}, "BucketKeyEnabled": "false"}}


# ---------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class S3Request:
    """One path-style S3 request as the layer judges it."""

    method: str
    bucket: str
    key: str
    subresources: frozenset[str]
    region: str
    account: str

    @property
    def is_create_bucket(self) -> bool:
        return self.method == "PUT" and not self.key and not self.subresources

    @property
    def is_delete_bucket(self) -> bool:
        return self.method == "DELETE" and not self.key and not self.subresources

    @property
    def is_bucket_config_write(self) -> bool:
        """A write of a bucket subresource (policy, tagging, encryption, ...), or DeleteBucket."""
        return self.method in ("PUT", "POST", "DELETE") and not self.key and not self.is_create_bucket

    @property
    def is_head(self) -> bool:
        return self.method == "HEAD"


def parse_request(environ: dict[str, Any]) -> S3Request | None:
    """The S3 request in `environ`; None for other services, S3 Control and ListBuckets."""
    scope = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    path = environ.get("PATH_INFO", "")
    # "s3express": what boto3 signs a bucket named like a directory bucket ("...--x-s3") with.
    if scope is None or scope.group(3) not in ("s3", "s3express") or path.startswith(S3_CONTROL_PATH):
        return None
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return None
    access_key, region = scope.group(1), scope.group(2)
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return S3Request(
        method=environ.get("REQUEST_METHOD", "GET"),
        bucket=bucket,
        key=key,
        subresources=frozenset(query),
        region=region,
        account=environ.get(ACCOUNT_HEADER) or account_of(access_key),
    )


def account_of(access_key: str) -> str:
    """The account moto files this access key under (STS AssumeRole keys carry the role's)."""
    from moto.iam.models import get_account_id_from

    return str(get_account_id_from(access_key))


@dataclass(frozen=True)
class BucketFacts:
    account: str
    region: str
    public_access_block: Any  # moto's PublicAccessBlock or None


def find_bucket(name: str) -> BucketFacts | None:
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(name)
    if owner is None:
        return None
    partition, account = owner
    bucket = s3_backends[account][partition].buckets.get(name)
    if bucket is None:
        return None
    return BucketFacts(account, bucket.region_name, bucket.public_access_block)


def account_public_access_block(account: str) -> Any:
    """The account-level Block Public Access setting (S3 Control), or None."""
    from moto.s3control.models import s3control_backends

    return s3control_backends[account]["aws"].public_access_block


# ---------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Refusal:
    """An S3 error answer: status, code, message, extra XML elements and headers."""

    status: int
    code: str
    message: str
    extra: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    def respond(self, start_response: Callable[..., Any], *, head: bool) -> Iterable[bytes]:
        reason = {301: "Moved Permanently", 400: "Bad Request", 403: "Forbidden", 409: "Conflict"}[self.status]
        # A HEAD answer has no body: botocore then sees only the status (and the headers).
        body = b"" if head else self.xml()
        headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), *self.headers]
        start_response(f"{self.status} {reason}", headers)
        return [body]

    def xml(self) -> bytes:
        extra = "".join(f"<{name}>{_escape(value)}</{name}>" for name, value in self.extra)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{_escape(self.message)}</Message>{extra}"
            "<RequestId>KUMOSTRICTS3</RequestId></Error>"
        ).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def valid_bucket_name(name: str) -> bool:
    """AWS, "General purpose bucket naming rules": 3-63 characters of lowercase letters, digits,
    dots and hyphens, beginning and ending with a letter or digit; no two adjacent periods; not
    formatted as an IP address; none of the reserved prefixes ("xn--", "sthree-",
    "sthree-configurator", "amzn-s3-demo-") or suffixes ("-s3alias", "--ol-s3", ".mrap",
    "--x-s3", "--table-s3"). The SDKs check only characters and length up to 255 on the client,
    so the rest is the service's to refuse."""
    return (
        3 <= len(name) <= 63
        and NAME_CHARACTERS.fullmatch(name) is not None
        and ".." not in name
        and IP_ADDRESS.fullmatch(name) is None
        and not name.startswith(RESERVED_PREFIXES)
        and not name.endswith(RESERVED_SUFFIXES)
    )


def name_refusal(name: str) -> Refusal | None:
    """S3's answer to CreateBucket with a name it does not allow: 400 InvalidBucketName "The
    specified bucket is not valid." naming the bucket (S3 API reference, "Error responses":
    InvalidBucketName, 400; S3's message as quoted in versity/versitygw#1358)."""
    if valid_bucket_name(name):
        return None
    return Refusal(400, "InvalidBucketName", MESSAGE_INVALID_NAME, (("BucketName", name),))


def location_refusal(region: str, location: str) -> Refusal | None:
    """CreateBucket's LocationConstraint judged against the region the request was signed for.

    AWS CreateBucket API reference: "If you don't specify a Region, the bucket is created in
    us-east-1"; a regional endpoint takes only its own region (aws/aws-cli#4445, the error texts
    in aws/aws-parallelcluster#1190 and aws/aws-sdk-php#2696). Naming us-east-1 explicitly is
    refused as InvalidLocationConstraint (versity/versitygw#1654 records S3's answer). Only the
    legacy global endpoint s3.amazonaws.com lets a us-east-1 request name another region; the bed
    has no global endpoint.
    """
    if region == US_EAST_1:
        if location == US_EAST_1:
            extra = (("LocationConstraint", location),)
            return Refusal(400, "InvalidLocationConstraint", MESSAGE_INVALID_LOCATION, extra)
        if location:
            return Refusal(400, "IllegalLocationConstraintException", MESSAGE_INCOMPATIBLE.format(location=location))
        return None
    if not location:
        return Refusal(400, "IllegalLocationConstraintException", MESSAGE_UNSPECIFIED)
    if location != region:
        return Refusal(400, "IllegalLocationConstraintException", MESSAGE_INCOMPATIBLE.format(location=location))
    return None


def redirect(bucket: str, region: str) -> Refusal:
    """S3's answer to a call on a bucket sent to another region's endpoint (AWS S3 API reference,
    "Error responses": PermanentRedirect, 301; the x-amz-bucket-region header names the region,
    which the SDKs follow)."""
    endpoint = f"{bucket}.s3.{region}.amazonaws.com"
    return Refusal(
        301,
        "PermanentRedirect",
        MESSAGE_REDIRECT,
        (("Endpoint", endpoint), ("Bucket", bucket)),
        (("x-amz-bucket-region", region),),
    )


def is_public_policy(document: bytes) -> bool:
    """A policy S3 calls public (AWS, "Blocking public access", "The meaning of public"): an
    Allow to every principal ("*") without a condition narrowing it."""
    try:
        policy = json.loads(document or b"{}")
    except ValueError:
        return False
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        principal = statement.get("Principal")
        everyone = principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))
        if statement.get("Effect") == "Allow" and everyone and not statement.get("Condition"):
            return True
    return False


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------- the middleware


@dataclass
class StrictS3:
    """WSGI middleware in front of moto: judges each S3 request before moto sees it."""

    app: Any
    timings: Timings
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _deleted_at: dict[str, float] = field(default_factory=dict)
    _writing: set[str] = field(default_factory=set)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if is_list_buckets(environ):
            return self._list_buckets(environ, start_response)
        request = parse_request(environ)
        if request is None:
            return self.app(environ, start_response)
        body = b"" if request.key else _read_body(environ)  # bucket-level bodies are small
        refusal = self.judge(request, body)
        if refusal is not None:
            return refusal.respond(start_response, head=request.is_head)
        if not request.is_bucket_config_write:
            return self.app(environ, start_response)
        return self._write(request, environ, start_response)

    def judge(self, request: S3Request, body: bytes) -> Refusal | None:
        """The refusal real S3 would answer with, or None to let moto answer."""
        bucket = find_bucket(request.bucket)
        if request.is_create_bucket:
            location = _location_constraint(body)
            refusal = name_refusal(request.bucket) or location_refusal(request.region, location)
            if refusal is None and bucket is None and self._recently_deleted(request.bucket):
                # aws/aws-cli#2411 and #2593: a name deleted moments ago cannot be created again
                # at once ("wait up to an hour" when the region changes).
                refusal = Refusal(409, "OperationAborted", MESSAGE_CONFLICT)
            return refusal  # an existing name: moto answers BucketAlreadyExists / ...OwnedByYou
        if bucket is None:
            return None  # moto answers NoSuchBucket
        if bucket.account != request.account:
            # Another account's bucket without a bucket policy granting access: 403 (AWS,
            # HeadBucket API reference: "403 Forbidden ... if you do not have permission").
            return Refusal(403, "AccessDenied", MESSAGE_ACCESS_DENIED)
        if bucket.region != request.region and "location" not in request.subresources:
            return redirect(request.bucket, bucket.region)
        account_block = account_public_access_block(bucket.account)
        public_policy = request.method == "PUT" and "policy" in request.subresources and is_public_policy(body)
        if public_policy and _blocks_public_policy(bucket.public_access_block, account_block):
            message = MESSAGE_PUBLIC_POLICY_BLOCKED.format(account=request.account, bucket=request.bucket)
            return Refusal(403, "AccessDenied", message)
        return None

    def _write(
        self, request: S3Request, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """A bucket configuration write, refused while another write on the bucket is running
        (pulumi-components#46: bucket policy and ownership controls changed at the same time;
        hashicorp/terraform-provider-aws#26805; ansible/ansible#67811)."""
        with self._lock:
            busy = request.bucket in self._writing
            if not busy:
                self._writing.add(request.bucket)
        if busy:
            return Refusal(409, "OperationAborted", MESSAGE_CONFLICT).respond(start_response, head=False)
        status: list[str] = []

        def recording_start_response(code: str, headers: Any, *args: Any) -> Any:
            status.append(code)
            return start_response(code, headers, *args)

        try:
            # moto builds its answer whole, so the write is over once the list is complete.
            answer = list(self.app(environ, recording_start_response))
        finally:
            with self._lock:
                self._writing.discard(request.bucket)
        if request.is_delete_bucket and status and status[0].startswith("2"):
            with self._lock:
                self._deleted_at[request.bucket] = self.clock()
        return answer

    def _list_buckets(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """ListBuckets with each bucket's `BucketRegion`, which S3 added to the answer in 2024
        (ListBuckets API reference) and moto leaves out."""
        answer: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            answer[:] = [status, headers]
            return lambda data: None

        body = with_bucket_regions(b"".join(self.app(environ, capture)))
        status, headers = answer
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _recently_deleted(self, name: str) -> bool:
        with self._lock:
            deleted = self._deleted_at.get(name)
            if deleted is None:
                return False
            if self.clock() - deleted < self.timings.s3_name_reuse_delay:
                return True
            del self._deleted_at[name]
            return False


def is_list_buckets(environ: dict[str, Any]) -> bool:
    scope = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    path = environ.get("PATH_INFO", "")
    return scope is not None and scope.group(3) == "s3" and path in ("", "/") and environ.get("REQUEST_METHOD") == "GET"


LISTED_BUCKET = re.compile(rb"<Bucket>\s*<Name>([^<]+)</Name>(.*?)</Bucket>", re.DOTALL)


def with_bucket_regions(body: bytes) -> bytes:
    def add_region(found: re.Match[bytes]) -> bytes:
        if b"<BucketRegion>" in found.group(2):
            return found.group(0)
        bucket = find_bucket(found.group(1).decode())
        region = f"<BucketRegion>{bucket.region}</BucketRegion>".encode() if bucket else b""
        return b"<Bucket><Name>" + found.group(1) + b"</Name>" + found.group(2) + region + b"</Bucket>"

    return LISTED_BUCKET.sub(add_region, body)


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back so moto reads it too."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def _location_constraint(body: bytes) -> str:
    found = LOCATION_CONSTRAINT.search(body or b"")
    return found.group(1).decode() if found else ""


def _blocks_public_policy(*blocks: Any) -> bool:
    """Bucket- or account-level BlockPublicPolicy on (AWS, "Blocking public access to your Amazon
    S3 storage": S3 applies the most restrictive combination of the two levels)."""
    return any(block is not None and block.block_public_policy for block in blocks)


def wrap(app: Any) -> Any:
    """The strict S3 middleware around moto's WSGI app."""
    return StrictS3(app, Timings.from_env())
