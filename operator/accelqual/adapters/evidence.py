"""S3 evidence: per-node reports, run summaries and human reports, each stored with its SHA-256.

boto3 against any S3 API (AWS, MinIO, Ceph) with an optional custom endpoint.
Credentials come from a Secret named in the spec (read by the handler and passed in as
explicit keys) or, when no Secret is named, from boto3's default chain: environment
variables, then IRSA web identity (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, the
token exchanged with STS when first needed), shared files, then the instance profile.
Each call retries a few times; a failure raises `EvidenceError`, and the caller
(`handlers.delivery`) keeps the evidence in the durable outbox.

Evidence is written once: `put` is a conditional create (`If-None-Match: *`), so a retry
after an answer that was lost, an operator that restarts after an upload, or an outbox
entry uploaded again after S3 took it, never writes a second version of an object; it
learns the digest of the object already there instead (and the caller decides whether
that object is the same evidence). `replace` overwrites, for the rare object that must.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol, overload

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions

from accelqual.adapters import redaction

log = logging.getLogger(__name__)


class EvidenceError(Exception):
    """Evidence could not be stored; the message says why in one line (never credentials)."""


class EvidenceStore(Protocol):
    def put(self, key: str, body: bytes, content_type: str = "application/json") -> str:
        """Create `key` with `body` unless it exists; the SHA-256 of the object now at `key`."""

    def replace(self, key: str, body: bytes, content_type: str = "application/json") -> str:
        """Write `body` at `key` whatever is there; its SHA-256."""

    def uri(self, key: str) -> str: ...


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret, even by accident in a log line
        return "S3Credentials(<redacted>)"


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class S3Evidence:
    """One bucket; `put` returns the SHA-256 it stored (also written as object metadata)."""

    def __init__(self, bucket: str, *, region: str | None = None, endpoint: str | None = None,
                 credentials: S3Credentials | None = None, attempts: int = 3, timeout: float = 10.0) -> None:
        self.bucket = bucket
        config = botocore.config.Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=timeout, read_timeout=timeout,
            s3={"addressing_style": "path"} if endpoint else None,
        )
        kwargs: dict[str, Any] = {"config": config}
        self._explicit = credentials is not None
        if region:
            kwargs["region_name"] = region
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if credentials is not None:
            kwargs["aws_access_key_id"] = credentials.access_key_id
            kwargs["aws_secret_access_key"] = credentials.secret_access_key
            if credentials.session_token:
                kwargs["aws_session_token"] = credentials.session_token
        # Before any client exists: botocore logs signed requests at DEBUG (see adapters.redaction).
        redaction.install()
        if credentials is not None:
            redaction.register(credentials.access_key_id, credentials.secret_access_key, credentials.session_token)
        self._session: Any = boto3.session.Session()
        if credentials is None:
            _register_static_chain_keys(self._session)
        self._client: Any = self._session.client("s3", **kwargs)

    @property
    def credential_source(self) -> str | None:
        """Where the credentials come from: `explicit` (a Secret), or the default chain's provider
        (`env`, `assume-role-with-web-identity`, `shared-credentials-file`, `iam-role`...); None if none.
        Resolving the provider does not contact STS or S3."""
        if self._explicit:
            return "explicit"
        credentials = self._session.get_credentials()
        return None if credentials is None else str(credentials.method)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> str:
        """Create the object unless one is at `key` already; the SHA-256 of the object now there.

        A digest other than `body`'s means somebody (an earlier attempt, or anyone) stored
        something else there first: it is not overwritten here (see `replace`)."""
        digest = sha256_hex(body)
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                                    Metadata={"sha256": digest}, IfNoneMatch="*")
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return self.digest(key)  # already there (our earlier attempt, or a concurrent writer)
            if code != "NotImplemented":
                raise EvidenceError(_describe(exc)) from None
            # A store without conditional writes: look first (a race here only repeats identical evidence).
            existing = self.digest(key, missing_ok=True)
            return existing if existing is not None else self.replace(key, body, content_type)
        except botocore.exceptions.BotoCoreError as exc:
            raise EvidenceError(_describe(exc)) from None
        return digest

    def replace(self, key: str, body: bytes, content_type: str = "application/json") -> str:
        digest = sha256_hex(body)
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                                    Metadata={"sha256": digest})
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise EvidenceError(_describe(exc)) from None
        return digest

    @overload
    def digest(self, key: str) -> str: ...

    @overload
    def digest(self, key: str, *, missing_ok: bool) -> str | None: ...

    def digest(self, key: str, *, missing_ok: bool = False) -> str | None:
        """The SHA-256 of the object's content, read and hashed (metadata is only what a writer claimed)."""
        try:
            return sha256_hex(self.get(key))
        except EvidenceError as exc:
            if missing_ok and "NoSuchKey" in str(exc):
                return None
            raise

    def get(self, key: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """The object at `key` (at most `max_bytes`; a bigger one is refused, not truncated)."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            if int(response.get("ContentLength") or 0) > max_bytes:
                raise EvidenceError(f"s3://{self.bucket}/{key} is larger than {max_bytes} bytes")
            data: bytes = response["Body"].read(max_bytes + 1)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise EvidenceError(_describe(exc)) from None
        if len(data) > max_bytes:
            raise EvidenceError(f"s3://{self.bucket}/{key} is larger than {max_bytes} bytes")
        return data

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (for simulations and fresh MinIO; production buckets exist)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError:
            self._client.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.BotoCoreError as exc:
            raise EvidenceError(_describe(exc)) from None


def _register_static_chain_keys(session: Any) -> None:
    """Keys the default chain takes from the environment or a file are redacted by value too; rotating ones
    (web identity, instance role) are not read here (that would call STS or the metadata service), their
    header forms are redacted whatever they are."""
    found = session.get_credentials()
    if type(found) is botocore.credentials.Credentials:
        redaction.register(found.access_key, found.secret_key, found.token)


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; `ValueError` for anything else."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key


def _describe(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"S3 {error.get('Code', 'error')}: {error.get('Message', '')}"[:300]
    return f"S3 unreachable: {type(exc).__name__}"
