"""Credentials never reach a log line, whoever logs it and whatever the log level.

At DEBUG, botocore logs each request's headers (`Authorization: ... Credential=<access key id>/...`,
`X-Amz-Security-Token: <session token>`) and its canonical request (the token again). An operator
run with `--log-level debug` to chase a problem must not write its S3 keys into the cluster's log
store. `install()` wraps the process's log record factory once, so every record (any logger, any
handler, also pytest's) is redacted when it is made: values registered with `register()` (the keys
`adapters.evidence` is given or finds) are replaced wherever they appear, and in the AWS libraries'
own records the header forms above are replaced whatever their value (keys that rotate, keys from
a provider we never saw). Called by `adapters.evidence` before any S3 client exists.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

REDACTED = "[REDACTED]"
#: Loggers whose records may carry signed requests.
AWS_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
#: Shorter strings are not secrets worth searching for (and would redact ordinary words).
MIN_SECRET_LENGTH = 8
_HEADER_FORMS = (
    # 'X-Amz-Security-Token': b'...'  /  x-amz-security-token:...  (request headers, canonical request)
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)([^'\"\s,}]+)"),
    # Authorization: AWS4-HMAC-SHA256 Credential=AKIA.../20261129/...,  Signature=...
    re.compile(r"(Credential=)([^/,\s'\"]+)"),
    re.compile(r"(Signature=)([0-9a-fA-F]+)"),
    # X-Amz-Credential / X-Amz-Security-Token in presigned URLs
    re.compile(r"(?i)(X-Amz-(?:Credential|Security-Token)=)([^&\s'\"]+)"),
)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_installed = False


def register(*values: str | None) -> None:
    """Redact these values from every log record from now on."""
    global _secrets
    fresh = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
    if fresh - _secrets:
        with _lock:
            _secrets = _secrets | fresh
    install()


def install() -> None:
    """Wrap the log record factory (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def redact(text: str, *, headers: bool = True) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if headers:
        for form in _HEADER_FORMS:
            text = form.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_record(record: logging.LogRecord) -> None:
    aws = record.name.startswith(AWS_LOGGERS)
    if not _secrets and not aws:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is the logging module's to report, not ours
        return
    clean = redact(message, headers=aws)
    if clean != message:
        record.msg, record.args = clean, None
