"""Log set-up for `loom serve`: plain text (the default) or one JSON object per line.

`LOOM_LOG_FORMAT=json` makes every record, Loom's and uvicorn's, a JSON line with its
time, level, logger, message and the request id of the request it belongs to (if any),
so a log pipeline can join a client's `X-Request-Id` to what Loom did. Secrets are never
passed to a logger in the first place.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from loom.observability.http import current_request_id


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": current_request_id.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(log_format: str, level: str) -> bool:
    """Set up the root logger for JSON lines. False for text: uvicorn's default set-up
    stays; True: uvicorn must be told not to configure logging (`log_config=None`)."""
    if log_format != "json":
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return True
