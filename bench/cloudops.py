"""Which AWS operation an HTTP request is, read from the request alone, and a counter of them.

The side-by-side bench (bench/sidebyside.py) puts a counting proxy in front of moto and counts
every controller's requests the same way, whatever SDK or language made them:

- the service comes from the SigV4 credential scope (`Credential=AKID/date/region/SERVICE/aws4_request`
  in the Authorization header or the presigned `X-Amz-Credential` query parameter;
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html);
- JSON-protocol services name the operation in `X-Amz-Target: Prefix_Version.Operation`;
- query-protocol services (RDS, STS) in the `Action` parameter of the form body or query string
  (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/CommonParameters.html);
- S3's REST API by method, whether a bucket and a key are addressed, and the sub-resource in the
  query string (the names of https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html).
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

UNKNOWN = "unknown"

# S3 bucket sub-resources: query key -> the operation's name without its Get/Put/Delete verb.
S3_BUCKET_SUBRESOURCES = {
    "accelerate": "BucketAccelerateConfiguration",
    "acl": "BucketAcl",
    "analytics": "BucketAnalyticsConfiguration",
    "cors": "BucketCors",
    "encryption": "BucketEncryption",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration",
    "inventory": "BucketInventoryConfiguration",
    "lifecycle": "BucketLifecycleConfiguration",
    "location": "BucketLocation",
    "logging": "BucketLogging",
    "metrics": "BucketMetricsConfiguration",
    "notification": "BucketNotificationConfiguration",
    "object-lock": "ObjectLockConfiguration",
    "ownershipControls": "BucketOwnershipControls",
    "policy": "BucketPolicy",
    "policyStatus": "BucketPolicyStatus",
    "publicAccessBlock": "PublicAccessBlock",
    "replication": "BucketReplication",
    "requestPayment": "BucketRequestPayment",
    "tagging": "BucketTagging",
    "versioning": "BucketVersioning",
    "website": "BucketWebsite",
}
# Sub-resources whose operation names break the Get/Put/Delete + name pattern.
S3_SPECIAL = {
    ("GET", "uploads"): "ListMultipartUploads",
    ("GET", "versions"): "ListObjectVersions",
    ("POST", "delete"): "DeleteObjects",
}
# Configurations kept by id: a GET without `id` lists them all.
S3_LISTED_BY_ID = {
    "analytics": "ListBucketAnalyticsConfigurations",
    "intelligent-tiering": "ListBucketIntelligentTieringConfigurations",
    "inventory": "ListBucketInventoryConfigurations",
    "metrics": "ListBucketMetricsConfigurations",
}
S3_OBJECT_SUBRESOURCES = {"acl": "ObjectAcl", "tagging": "ObjectTagging", "retention": "ObjectRetention"}
VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}


def service_of(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str:
    """The signing service of a SigV4 request ("s3", "rds", "sts", "tagging", ...)."""
    authorization = _header(headers, "Authorization")
    credential = ""
    if "Credential=" in authorization:
        credential = authorization.split("Credential=", 1)[1].split(",", 1)[0]
    elif query.get("X-Amz-Credential"):
        credential = query["X-Amz-Credential"][0]
    parts = credential.strip().split("/")
    return parts[3] if len(parts) >= 5 else UNKNOWN


def operation_of(method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """(service, operation) of one request; `target` is the request line's path and query."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    service = service_of(headers, query)
    amz_target = _header(headers, "X-Amz-Target")
    if amz_target:
        return service, amz_target.rsplit(".", 1)[-1]
    action = query.get("Action") or _form(headers, body).get("Action")
    if action:
        return service, action[0]
    if service == "s3":
        return service, s3_operation(method, parts.path, query, _header(headers, "Host"))
    return service, UNKNOWN


def s3_operation(method: str, path: str, query: Mapping[str, list[str]], host: str = "") -> str:
    """The S3 REST operation of a request, path-style or virtual-hosted."""
    method = method.upper()
    segments = [unquote(s) for s in path.split("/") if s]
    bucket_in_host = _virtual_hosted(host)
    has_bucket = bucket_in_host or bool(segments)
    has_key = len(segments) >= (1 if bucket_in_host else 2)
    if not has_bucket:
        return "ListBuckets" if method == "GET" else UNKNOWN
    if has_key:
        return _s3_object_operation(method, query)
    for key in query:
        if method == "GET" and key in S3_LISTED_BY_ID and "id" not in query:
            return S3_LISTED_BY_ID[key]
        special = S3_SPECIAL.get((method, key))
        if special:
            return special
        name = S3_BUCKET_SUBRESOURCES.get(key)
        if name and method in VERBS:
            return VERBS[method] + name
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, UNKNOWN)


def _s3_object_operation(method: str, query: Mapping[str, list[str]]) -> str:
    for key, name in S3_OBJECT_SUBRESOURCES.items():
        if key in query and method in VERBS:
            return VERBS[method] + name
    if method == "POST":
        return "CompleteMultipartUpload" if "uploadId" in query else "CreateMultipartUpload"
    if method == "PUT" and "partNumber" in query:
        return "UploadPart"
    return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject", "DELETE": "DeleteObject"}.get(method, UNKNOWN)


def _virtual_hosted(host: str) -> bool:
    """Whether the Host header names a bucket (`bucket.s3.amazonaws.com`, `bucket.localhost`)
    rather than the endpoint itself (an IP address or a bare host name)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        pass
    labels = name.split(".")
    return len(labels) >= 2 and (labels[1] in ("s3", "localhost") or labels[1].startswith("s3-"))


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict from a test; http.client's message is case-insensitive already
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), "")
    return str(value or "")


def _form(headers: Mapping[str, str], body: bytes) -> dict[str, list[str]]:
    if not _header(headers, "Content-Type").startswith("application/x-www-form-urlencoded"):
        return {}
    return parse_qs(body.decode(errors="replace"), keep_blank_values=True)


class OperationCounter:
    """(service, operation) -> requests, bumped from the proxy's handler threads; `snapshot()`
    now and `since(snapshot)` later give the requests of one phase."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        key = operation_of(method, target, headers, body)
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)

    def since(self, before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
        now = self.snapshot()
        now.subtract(before)
        return +now  # drops the zeros


def by_service(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{service: {operation: requests}}, sorted, for results.json."""
    grouped: dict[str, dict[str, int]] = {}
    for (service, operation), n in sorted(counts.items()):
        grouped.setdefault(service, {})[operation] = n
    return grouped
