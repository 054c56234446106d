"""Deterministic names: run ids, probe pod names and label-safe values.

A restarted operator must find the pods it created instead of creating twins, so a
pod's name is a pure function of (qualification, run, node), at most 63 characters.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

_UNSAFE = re.compile(r"[^a-z0-9-]+")


def run_id(started: datetime) -> str:
    """A run id from the run's start time (UTC, second resolution): sortable and label-safe."""
    return started.strftime("%Y%m%d-%H%M%S")


def _digest(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", errors="surrogatepass")).hexdigest()[:length]


def probe_pod_name(qualification: str, run: str, node: str) -> str:
    """`aq-<qualification>-<node>-<hash>`, readable prefixes, unique by the hash of all three."""
    qual = _UNSAFE.sub("-", qualification.lower()).strip("-")[:18].strip("-")
    host = _UNSAFE.sub("-", node.lower()).strip("-")[:28].strip("-")
    return f"aq-{qual}-{host}-{_digest(qualification, run, node)}"


def label_value(value: str) -> str:
    """`value` if it is a valid label value, else a readable prefix plus a hash (<= 63 chars)."""
    if len(value) <= 63 and re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", value):
        return value
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:50].strip("-_.")
    return f"{safe}-{_digest(value, length=10)}".lstrip("-")


def event_name(target: str, reason: str, discriminator: str) -> str:
    """Deterministic Event names, so a retried post after an operator restart is a 409, not a twin."""
    # Cut, then trimmed: a DNS label must not end with '-' (a 40th character '-' or '.' made "...-.aq-...").
    base = _UNSAFE.sub("-", target.lower()).strip("-")[:40].rstrip("-") or "object"
    return f"{base}.aq-{_digest(target, reason, discriminator, length=12)}"


def evidence_key(prefix: str, qualification: str, run: str, node: str) -> str:
    """S3 key of a node's report: `PREFIX/QUALIFICATION/RUN_ID/nodes/NODE.json` (DESIGN.md 3.6)."""
    return "/".join(p for p in (prefix.strip("/"), qualification, run, "nodes", f"{node}.json") if p)


def summary_key(prefix: str, qualification: str, run: str, name: str = "summary.json") -> str:
    return "/".join(p for p in (prefix.strip("/"), qualification, run, name) if p)
