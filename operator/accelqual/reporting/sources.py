"""Reading a run for `accelqual report`: local files and directories, or S3, with every digest verified.

A SOURCE is one of:
- `s3://BUCKET/KEY`: a run's `summary.json` (or the run's prefix, `.../RUN_ID/`), or one node report;
- a local directory laid out like S3 (`summary.json`, `nodes/NODE.json`, e.g. from `aws s3 sync`);
- a local JSON file: a run summary (its sibling `nodes/` directory is read if present), one
  `ProbeReport` (`accelqual probe --json`), or `accelqual simulate --json` output (which carries
  the run's summary as `summaryDocument`).

Node reports read next to a summary are checked against the summary's `reportSha256`
(and the human report against `humanReport.sha256`): a mismatch is `IntegrityError`,
never a quietly rendered report, because tampered evidence must not look valid. The
summary itself is checked against `expect_sha256` when given (the Qualification's
`status.reportSHA256`, or a node's `accelqual.io/report-sha256` for one report): without
it, whoever can rewrite the bucket can rewrite a report and the summary's digest of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelqual_probes.schema import LEGACY_SCHEMA_VERSION, SCHEMA_VERSION, ProbeReport, ReportError

from accelqual.adapters.evidence import EvidenceError, S3Evidence, parse_uri
from accelqual.planning.summary import SUMMARY_SCHEMA
from accelqual.reporting.run import RunDocument, report_document, run_document

#: Largest document read (a summary of a very large pool; a node report is at most 1 MiB).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


class SourceError(Exception):
    """The source cannot be read or is not a run, a summary or a report; the message says why."""


class IntegrityError(SourceError):
    """Evidence read does not match the digest recorded for it: it was changed after the run."""


@dataclass(frozen=True)
class S3Options:
    endpoint: str | None = None
    region: str | None = None


def load(source: str, *, s3: S3Options = S3Options(), all_reports: bool = False,
         expect_sha256: str | None = None) -> RunDocument:
    """The run (or single report) at `source`; node reports of failing nodes (or all) read and verified.

    `expect_sha256`: the digest the source document (the summary, or the one report) must have."""
    if source.startswith("s3://"):
        return _load_s3(source, s3, all_reports, expect_sha256)
    path = Path(source)
    if path.is_dir():
        path = path / "summary.json"
        if not path.is_file():
            raise SourceError(f"{path}: no such file (a run directory holds summary.json and nodes/)")
    if not path.is_file():
        raise SourceError(f"{source}: no such file or directory")
    raw = _read_file(path)
    data = _parse(raw, str(path))
    _check_digest(raw, expect_sha256, str(path), data)
    if data.get("schemaVersion") == SUMMARY_SCHEMA:
        return _load_summary_with_reports(path, all_reports, data)
    if data.get("schemaVersion") in (SCHEMA_VERSION, LEGACY_SCHEMA_VERSION):
        return report_document(_report(raw, str(path)), source=str(path))
    if "summaryDocument" in data:
        summary = data.get("summaryDocument")
        if not isinstance(summary, dict):
            raise SourceError(f"{path}: the simulation stored no run summary (was its report section set?)")
        return run_document(summary, source=f"{path} (accelqual simulate output)")
    raise SourceError(f"{path}: neither a run summary ({SUMMARY_SCHEMA}), a probe report ({SCHEMA_VERSION}) "
                      "nor `accelqual simulate --json` output")


def _load_summary_with_reports(path: Path, all_reports: bool, data: dict[str, Any] | None = None) -> RunDocument:
    if data is None:
        if not path.is_file():
            raise SourceError(f"{path}: no such file (a run directory holds summary.json and nodes/)")
        data = _parse(_read_file(path), str(path))
    summary = _summary(data, str(path))
    nodes_dir = path.parent / "nodes"

    def read(key: str) -> bytes | None:
        candidate = nodes_dir / Path(key).name
        return _read_file(candidate) if candidate.is_file() else None

    def read_human(key: str) -> bytes | None:
        candidate = path.parent / Path(key).name
        return _read_file(candidate) if candidate.is_file() else None

    reports = _verified_reports(summary, read, all_reports, str(path.parent))
    _verify_human_report(summary, read_human)
    return run_document(summary, reports, source=str(path))


def _check_digest(raw: bytes, expected: str | None, where: str, data: Mapping[str, Any]) -> None:
    if expected is None:
        return
    if "summaryDocument" in data:
        raise SourceError(f"{where}: a digest can be checked against summary.json or a node report, not against "
                          "`accelqual simulate` output")
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected.strip().lower():
        raise IntegrityError(f"{where} has SHA-256 {actual}, not the {expected} recorded for it (in the "
                             "Qualification's status or the node's annotation): it was changed after the run")


def _load_s3(uri: str, options: S3Options, all_reports: bool, expect_sha256: str | None = None) -> RunDocument:
    try:
        bucket, key = parse_uri(uri if not uri.endswith("/") else uri + "summary.json")
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    if not key.endswith(".json"):
        key = key.rstrip("/") + "/summary.json"
    store = S3Evidence(bucket, region=options.region, endpoint=options.endpoint)

    def get(object_key: str) -> bytes | None:
        try:
            return store.get(object_key, max_bytes=MAX_DOCUMENT_BYTES)
        except EvidenceError as exc:
            if "NoSuchKey" in str(exc):
                return None
            raise SourceError(f"s3://{bucket}/{object_key}: {exc}") from None

    raw = get(key)
    if raw is None:
        raise SourceError(f"s3://{bucket}/{key}: no such object")
    data = _parse(raw, f"s3://{bucket}/{key}")
    _check_digest(raw, expect_sha256, f"s3://{bucket}/{key}", data)
    if data.get("schemaVersion") in (SCHEMA_VERSION, LEGACY_SCHEMA_VERSION):
        return report_document(_report(raw, f"s3://{bucket}/{key}"), source=f"s3://{bucket}/{key}")
    summary = _summary(data, f"s3://{bucket}/{key}")
    reports = _verified_reports(summary, get, all_reports, f"s3://{bucket}")
    _verify_human_report(summary, get)
    return run_document(summary, reports, source=f"s3://{bucket}/{key}")


def _verified_reports(summary: Mapping[str, Any], read: Callable[[str], bytes | None], all_reports: bool,
                      where: str) -> dict[str, ProbeReport]:
    """Node reports the summary points to (failing nodes, or all), each checked against its digest."""
    reports: dict[str, ProbeReport] = {}
    mismatches: list[str] = []
    for row in summary.get("nodes") or []:
        key, digest, node = row.get("reportKey"), row.get("reportSha256"), str(row.get("node"))
        if not key or not digest or (not all_reports and row.get("verdict") == "pass"):
            continue
        body = read(str(key))
        if body is None:
            continue  # not downloaded (a local copy may hold only some reports)
        actual = hashlib.sha256(body).hexdigest()
        if actual != digest:
            mismatches.append(f"{node}: {where}/{key} has SHA-256 {actual}, the summary recorded {digest}")
            continue
        try:
            report = ProbeReport.parse_untrusted(body)
        except ReportError:
            continue  # evidence of a rejected output: verified, but not a report to chart
        reports[node] = report
    if mismatches:
        raise IntegrityError("node reports do not match the digests in the run summary (changed after the run):\n"
                             + "\n".join(f"  {m}" for m in mismatches))
    return reports


def _verify_human_report(summary: Mapping[str, Any], read: Callable[[str], bytes | None]) -> None:
    human = summary.get("humanReport")
    if not isinstance(human, Mapping) or not human.get("key") or not human.get("sha256"):
        return
    body = read(str(human["key"]))
    if body is not None and hashlib.sha256(body).hexdigest() != human["sha256"]:
        raise IntegrityError(f"the human report {human['key']} does not match the digest in the run summary "
                             f"({human['sha256']}): it was changed after the run")


def _summary(data: dict[str, Any], where: str) -> dict[str, Any]:
    if data.get("schemaVersion") != SUMMARY_SCHEMA:
        raise SourceError(f"{where}: not a run summary (schemaVersion {data.get('schemaVersion')!r})")
    return data


def _report(raw: bytes, where: str) -> ProbeReport:
    try:
        return ProbeReport.parse_untrusted(raw)
    except ReportError as exc:
        raise SourceError(f"{where}: {exc}") from None


def _read_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise SourceError(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"{where}: not JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(data, dict):
        raise SourceError(f"{where}: not a JSON object")
    return data
