"""Structured JSON logs with secrets scrubbed on the way out (configured at start-up)."""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("password", "secret", "token", "api_key", "apikey", "authorization", "access_code")
_SECRET_VALUES = re.compile(
    r"bs[tp]_[0-9A-Za-z]{20,}|eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]+"
)
# Any parameter whose *name* looks secret-bearing (access_code, password, client_secret, id_token,
# api_key, X-Auth, credential, session, signature...): a pattern over names, not a list of them.
SECRET_NAME = r"[^=&\s?]*(?:pass|secret|token|key|code|auth|cred|session|sig|state|nonce)[^=&\s]*"
_QUERY_SECRET = re.compile(rf"((?:^|(?<=[?&;\s])){SECRET_NAME}=)[^&;\s]*", re.IGNORECASE)


def redact_text(text: str) -> str:
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\1[redacted]", text)
    if "bst_" in text or "bsp_" in text or "eyJ" in text:
        text = _SECRET_VALUES.sub("[redacted]", text)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    """Whether a field name looks secret-bearing (cached: names come from code, a small set)."""
    lowered = key.lower()
    return any(w in lowered for w in _SECRET_KEYS)


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _secret_key(key):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event


class _StreamLogger:
    """Writes to ``sys.stdout``/``sys.stderr`` as they are *now*: a stream captured at start-up may be
    replaced or closed later (test runners, daemonisation), and a cached logger must not die with it."""

    def __init__(self, which: str) -> None:
        self.which = which

    def msg(self, message: str) -> None:
        stream = getattr(sys, self.which)
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _StreamHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    def __init__(self, which: str) -> None:
        super().__init__()
        self.which = which

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return getattr(sys, self.which)

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "info", *, json: bool = True, stream: str = "stdout") -> None:
    """Set up structlog and stdlib logging. The server logs to stdout; CLI commands pass
    ``stream="stderr"`` so their ``--json`` output on stdout stays machine-readable."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_args: _StreamLogger(stream),
        cache_logger_on_first_use=True,
    )
    # Third-party stdlib loggers (uvicorn errors, alembic) go through the same scrubbing filter.
    handler = _StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_StdlibRedactor())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _StdlibRedactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        return True
