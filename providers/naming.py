"""What the clouds kumo supports refuse in a name: the words and affixes they reserve.

Used by the controller's name derivation (controller/core/resources.py, `derived_external_name`),
which must give a name every supported cloud accepts, and by the GCS provider's check of an
explicit `spec.externalName` (the CRD's CEL rules cannot express "a close misspelling").
The character-set and length rules are not repeated here: the derivation builds names of
lowercase letters, digits and single hyphens, at most 63 characters, starting with a letter and
ending in a hex digest, so S3's reserved suffixes and IP-address forms cannot occur.

Sources:
- S3, "General purpose bucket naming rules"
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html): no prefix
  `xn--`, `sthree-` (which covers `sthree-configurator`), `amzn-s3-demo-`; no suffix `-s3alias`,
  `--ol-s3`, `.mrap`, `--x-s3`, `--table-s3`; not an IP address.
- GCS, "Bucket naming" (https://cloud.google.com/storage/docs/buckets#naming): no prefix
  `goog`; no "google" or close misspellings such as "g00gle" (GCS refused a random name ending
  "g00gl3": googleapis/google-cloud-cpp#9106); not an IP address.
- RDS (CreateDBInstance, DBInstanceIdentifier) and Cloud SQL (instance ID) reserve no words.
"""

from __future__ import annotations

import re

# Prefixes S3 or GCS refuse at the start of a bucket name.
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-", "goog")
# "google" and the close misspellings GCS is known to refuse (letters swapped for look-alike digits).
GOOGLE_LIKE = re.compile(r"g[o0][o0]g[l1][e3]")
