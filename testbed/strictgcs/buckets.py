"""The strict bucket layer: buckets.insert, list, patch, delete and setIamPolicy as GCS answers them.

gcp-storage-emulator serves one project. Here each bucket belongs to the project named by the
`project` query parameter of the buckets.insert that created it; the bucket resource records it
the way GCS does, as `projectNumber` (a number derived from the project id, so two projects
never share one). What this changes, each with its source:

- buckets.insert and buckets.list require `project` (400 "Required parameter: project"):
  https://cloud.google.com/storage/docs/json_api/v1/buckets/insert and .../buckets/list.
- buckets.insert refuses a name outside GCS's naming rules with 400 `invalid` "Invalid bucket
  name: '...'": 3-63 characters (222 with dots, 63 between them) of lowercase letters, digits,
  "-", "_" and ".", starting and ending with a letter or digit; not an IP address; no "goog"
  prefix; no "google" or close misspelling such as "g00gle"
  (https://cloud.google.com/storage/docs/buckets#naming; the message as in
  googleapis/nodejs-storage#1652; a plan that passes and an apply that fails on it:
  terraform-google-modules/terraform-google-cloud-storage#307).
- A name already taken answers 409 `conflict`, with GCS's two messages: "Your previous request to
  create the named bucket succeeded and you already own it." for the same project (seen in
  terraform-google-modules/terraform-google-cloud-storage#238), and "The requested bucket name is
  not available. The bucket namespace is shared by all users of the system. ..." for a name
  another project holds (terraform-google-modules/terraform-example-foundation#716; "bucket names
  reside in a single namespace", https://cloud.google.com/storage/docs/buckets#naming).
- buckets.list returns only the project's buckets, sorted by name, at most `maxResults` (and
  never more than 1,000) a page, with `nextPageToken` for the rest; `prefix` filters by name
  (https://cloud.google.com/storage/docs/json_api/v1/buckets/list).
- buckets.insert keeps the settings sent in its body (labels, versioning, lifecycle, encryption,
  iamConfiguration, ...) as GCS does; the location is answered upper-case with its
  `locationType`, and a new bucket reports publicAccessPrevention "inherited"
  (https://cloud.google.com/storage/docs/json_api/v1/buckets#resource).
- buckets.patch has patch semantics: the fields sent are merged into the bucket, objects field by
  field, and a null removes a key (a label is removed by sending it as null:
  https://cloud.google.com/storage/docs/using-bucket-labels#remove;
  https://cloud.google.com/storage/docs/json_api/v1/how-tos/performance#patch).
- At most one metadata update per second per bucket (https://cloud.google.com/storage/quotas):
  a patch or setIamPolicy sooner than `Limits.bucket_update_interval` after the bucket's previous
  metadata write (its creation included) answers 429 `rateLimitExceeded`
  (https://cloud.google.com/storage/docs/gcs429).

Not modelled: identities. Any caller may get, patch or delete any bucket, as a caller that was
granted access to the other project's bucket could; real GCS answers 403 to one that was not.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import buckets as emulator

from .limits import Limits

Handler = Callable[..., Any]

MAX_PAGE = 1000
MULTI_REGIONS = frozenset({"US", "EU", "ASIA"})
MESSAGE_PROJECT_REQUIRED = "Required parameter: project"
MESSAGE_INVALID_NAME = "Invalid bucket name: '{name}'"
NAME_CHARACTERS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
GOOGLE_LIKE = re.compile(r"g[o0][o0]g[l1][e3]")  # "google" and its close misspellings
MESSAGE_ALREADY_OWNED = "Your previous request to create the named bucket succeeded and you already own it."
MESSAGE_NOT_AVAILABLE = (
    "The requested bucket name is not available. The bucket namespace is shared by all users of the system. "
    "Please select a different name and try again."
)
MESSAGE_RATE = (
    "The bucket {name} exceeded the rate limit for bucket metadata updates. "
    "Please reduce your request rate. See https://cloud.google.com/storage/docs/gcs429."
)
# Written at insert; on PATCH merged (objects) or replaced (lists, scalars).
SETTINGS = tuple(field for field in emulator._WRITABLE_BUCKET_FIELDS if field not in ("acl", "defaultObjectAcl"))


def valid_bucket_name(name: str) -> bool:
    """GCS's bucket naming rules (https://cloud.google.com/storage/docs/buckets#naming)."""
    longest = 222 if "." in name else 63
    return (
        3 <= len(name) <= longest
        and all(len(part) <= 63 for part in name.split("."))
        and NAME_CHARACTERS.fullmatch(name) is not None
        and IP_ADDRESS.fullmatch(name) is None
        and not name.startswith("goog")
        and GOOGLE_LIKE.search(name) is None
    )


def project_number(project: str) -> str:
    """A stable 12-digit number for a project id (GCS reports the owner as its number)."""
    digest = hashlib.sha256(project.encode()).hexdigest()
    return str(10**11 + int(digest[:12], 16) % (9 * 10**11))


def merge(current: Any, change: Any) -> Any:
    """`change` merged into `current`: objects key by key, null removing a key; anything else replaced."""
    if not isinstance(change, Mapping) or not isinstance(current, Mapping):
        return copy.deepcopy(change)
    result = dict(current)
    for key, value in change.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def location_type(location: str) -> str:
    if location in MULTI_REGIONS:
        return "multi-region"
    return "region" if "-" in location else "dual-region"


def send_error(response: Any, status: HTTPStatus, reason: str, message: str, domain: str = "global") -> None:
    """Google's JSON error body (https://cloud.google.com/storage/docs/json_api/v1/status-codes)."""
    response.status = status
    response.json(
        {
            "error": {
                "code": status.value,
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
            }
        }
    )


def _query(request: Any, name: str) -> str:
    values = request.query.get(name) or [""]
    return str(values[0])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StrictBuckets:
    """The replacement handlers, sharing the time of each bucket's last metadata write."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._last_write: dict[str, float] = {}

    # ------------------------------------------------------------------ rate of metadata writes

    def _admit(self, name: str) -> bool:
        """Record a metadata write to `name` now, unless it comes too soon after the previous."""
        with self._lock:
            now = self._clock()
            previous = self._last_write.get(name)
            if previous is not None and now - previous < self._limits.bucket_update_interval:
                return False
            self._last_write[name] = now
            return True

    def _refuse_rate(self, response: Any, name: str) -> None:
        send_error(
            response, HTTPStatus.TOO_MANY_REQUESTS, "rateLimitExceeded", MESSAGE_RATE.format(name=name), "usageLimits"
        )

    # ------------------------------------------------------------------ handlers

    def insert(self, request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        body = request.data if isinstance(request.data, dict) else {}
        name = str(body.get("name") or "")
        project = _query(request, "project")
        if not name:
            emulator.insert(request, response, storage)  # its 400 "Empty bucket name"
            return
        if not project:
            send_error(response, HTTPStatus.BAD_REQUEST, "required", MESSAGE_PROJECT_REQUIRED)
            return
        if not valid_bucket_name(name):
            send_error(response, HTTPStatus.BAD_REQUEST, "invalid", MESSAGE_INVALID_NAME.format(name=name))
            return
        existing = storage.get_bucket(name)
        if existing is not None:
            same = existing.get("projectNumber") == project_number(project)
            message = MESSAGE_ALREADY_OWNED if same else MESSAGE_NOT_AVAILABLE
            send_error(response, HTTPStatus.CONFLICT, "conflict", message)
            return
        bucket = emulator._make_bucket_resource(name, project_number=project_number(project))
        bucket["iamConfiguration"]["publicAccessPrevention"] = "inherited"
        for field in SETTINGS:
            if body.get(field) is not None:
                bucket[field] = merge(bucket.get(field), body[field]) if field == "iamConfiguration" else body[field]
        location = str(bucket.get("location") or "US").upper()
        bucket.update(location=location, locationType=location_type(location))
        _mirror_uniform_access(bucket)
        storage.create_bucket(name, bucket)
        with self._lock:
            self._last_write[name] = self._clock()
        response.json(bucket)

    def ls(self, request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        project = _query(request, "project")
        if not project:
            send_error(response, HTTPStatus.BAD_REQUEST, "required", MESSAGE_PROJECT_REQUIRED)
            return
        number = project_number(project)
        prefix = _query(request, "prefix")
        after = base64.urlsafe_b64decode(_query(request, "pageToken")).decode() if _query(request, "pageToken") else ""
        size = min(MAX_PAGE, int(_query(request, "maxResults") or MAX_PAGE))
        names = sorted(
            name
            for name, bucket in storage.buckets.items()
            if bucket.get("projectNumber") == number and name.startswith(prefix) and name > after
        )
        page = names[:size]
        answer: dict[str, Any] = {"kind": "storage#buckets"}
        if page:
            answer["items"] = [storage.buckets[name] for name in page]
        if len(names) > size:
            answer["nextPageToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        response.json(answer)

    def patch(self, request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        name = request.params.get("bucket_name")
        bucket = storage.get_bucket(name) if name else None
        if bucket is None:
            response.status = HTTPStatus.NOT_FOUND
            return
        if not self._admit(name):
            self._refuse_rate(response, name)
            return
        change = request.data if isinstance(request.data, dict) else {}
        updated = dict(bucket)
        for field in SETTINGS:
            if field in change:
                merged = merge(updated.get(field), change[field])
                if merged is None:
                    updated.pop(field, None)
                else:
                    updated[field] = merged
        for field in ("acl", "defaultObjectAcl"):
            if change.get(field) is not None:
                emulator._patch_bucket(updated, {field: change[field]})
        _mirror_uniform_access(updated)
        updated["metageneration"] = str(int(bucket.get("metageneration", "1")) + 1)
        updated["updated"] = _now()
        storage.create_bucket(name, updated)
        response.json(updated)

    def set_iam_policy(self, request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        name = request.params.get("bucket_name")
        if name and storage.get_bucket(name) is not None and not self._admit(name):
            self._refuse_rate(response, name)
            return
        emulator.set_iam_policy(request, response, storage)

    def delete(self, request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        emulator.delete(request, response, storage)
        name = request.params.get("bucket_name")
        if name and storage.get_bucket(name) is None:
            with self._lock:
                self._last_write.pop(name, None)  # a new bucket of that name starts afresh


def _mirror_uniform_access(bucket: dict[str, Any]) -> None:
    """bucketPolicyOnly is the older name of uniformBucketLevelAccess; GCS reports both alike."""
    iam = bucket.get("iamConfiguration")
    if isinstance(iam, dict) and isinstance(iam.get("uniformBucketLevelAccess"), dict):
        iam["bucketPolicyOnly"] = dict(iam["uniformBucketLevelAccess"])


def install(limits: Limits) -> StrictBuckets:
    """Route the emulator's bucket requests to a `StrictBuckets`; returns it."""
    strict = StrictBuckets(limits)
    replacements: dict[Handler, Handler] = {
        emulator.insert: strict.insert,
        emulator.ls: strict.ls,
        emulator.patch: strict.patch,
        emulator.set_iam_policy: strict.set_iam_policy,
        emulator.delete: strict.delete,
    }
    for _pattern, methods in server.HANDLERS:
        for method, handler in list(methods.items()):
            if handler in replacements:
                methods[method] = replacements[handler]
    return strict
