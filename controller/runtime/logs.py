"""Log setup for `kumo run`: text for humans, JSON lines for log pipelines.

No secret value is ever passed to a logger by kumo's code; the JSON formatter adds nothing that
could carry one (no request bodies, no environment).

At INFO the log says what the controller did (each cloud create, update and delete, with the
object and the external name; failures; leadership), not how kopf dispatched it: kopf's own line
for every handled watch event ("Handler 'watch-databases' succeeded.") is demoted to DEBUG by
`KopfChatter`, where it still helps when following one event through the machinery.
"""

from __future__ import annotations

import json
import logging
import re

# kopf logs one of these after every successful handler call, i.e. for every watch event
# (kopf/_core/actions/execution.py: `logger.info(f"{handler} succeeded.")`, where a handler's
# str() is "Handler 'id'", "Activity 'id'", "Daemon 'id'", ...).
_KOPF_SUCCESS = re.compile(r"^(\[[^\]]*\] )?(Handler|Activity|Daemon|Timer|Indexer|Webhook) '[^']*' succeeded\.$")


class KopfChatter(logging.Filter):
    """Demotes kopf's per-event success lines from INFO to DEBUG.

    Attached to the output handler, so it sees records of every logger (kopf logs through
    `kopf.objects` and `kopf.activities.*`); a demoted record is written only when the log
    level is DEBUG.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.threshold = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.startswith("kopf") and _is_kopf_success(record):
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return self.threshold <= logging.DEBUG
        return True


def _is_kopf_success(record: logging.LogRecord) -> bool:
    return bool(_KOPF_SUCCESS.match(record.getMessage()))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    handler.addFilter(KopfChatter(root.level))
    # The SDKs are chatty at INFO and could echo request details at DEBUG.
    for noisy in ("botocore", "boto3", "urllib3", "google", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
