"""S3 credentials never leave the operator: not in any log line at DEBUG (ours, kopf's, botocore's, urllib3's,
the kubernetes client's), not in Events, the status, or anything else it writes to the API server.

Two runs: keys (with a session token) from the Secret a Qualification names, through an S3 outage so
that the error paths log too; and keys from the environment (boto3's default chain).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest
from accelqual.adapters import redaction
from accelqual.runtime import OperatorOptions
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.modelled import ModelledProbeRunner

from tests.e2e.helpers import qualification, sim_nodes, wait_until

SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAQUALSECRETKEY7777",
               "AWS_SECRET_ACCESS_KEY": "wJalr-accelqual-TOP-SECRET-9f3a1c7d",
               "AWS_SESSION_TOKEN": "FwoGZXIvYXdz-accelqual-session-token-5e2b0c"}
ENV_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAQUALENVKEY888888",
            "AWS_SECRET_ACCESS_KEY": "env-accelqual-SECRET-a81f0e22",
            "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2-accelqual-env-token-77d1"}
LOGGERS = ("", "accelqual", "kopf", "aiohttp", "urllib3", "botocore", "boto3", "s3transfer", "kubernetes",
           "werkzeug", "asyncio")


def _forms(value: str) -> list[str]:
    """The value and the encodings a leak could take (base64 as in a Secret, URL-safe base64)."""
    raw = value.encode()
    return [value, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]


def _fast_backoff(options: OperatorOptions) -> OperatorOptions:
    return replace(options, debounce=0.1, config=replace(options.config, evidence_backoff_max=1.0))


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.2), kubelet_interval=0.05,
                          operator_options=_fast_backoff) as sim:
        yield sim


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    return caplog


def test_no_credential_appears_in_logs_events_status_or_any_write(
        cluster: SimulatedCluster, everything_at_debug: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.s3 is not None
    for name in LOGGERS:  # LocalS3 quiets werkzeug when it starts
        logging.getLogger(name).setLevel(logging.DEBUG)
    emulator = cluster.server.emulator
    emulator.write_log.watch(["pods", "configmaps", "events", "qualifications", "nodes"])
    cluster.api.create(f"/api/v1/namespaces/{cluster.namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-s3", "namespace": cluster.namespace},
        "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in SECRET_KEYS.items()}})
    for key, value in ENV_KEYS.items():
        monkeypatch.setenv(key, value)
    cluster.add_nodes(sim_nodes(3, faults={1: ["slow-memory=0.25"]}))
    from_secret = {**cluster.report_spec(), "credentialsSecret": {"name": "vault-s3", "namespace": cluster.namespace}}
    from_env = {k: v for k, v in cluster.report_spec().items() if k != "credentialsSecret"}

    cluster.s3.stop()  # the first run's evidence waits in the outbox: S3 errors are logged
    cluster.start_operator()
    cluster.apply(qualification("with-secret", report=from_secret))
    cluster.wait_for_phase("with-secret", timeout=60)
    cluster.s3.start()
    wait_until("the outbox drained", lambda: cluster.qualification("with-secret")["status"]["evidenceBacklog"] == 0,
               timeout=60)
    cluster.apply(qualification("from-env", report=from_env))
    status = cluster.wait_for_phase("from-env", timeout=60)["status"]
    assert status["evidenceBacklog"] == 0 and status["reportSHA256"]

    records = everything_at_debug.records
    assert any(r.name.startswith("botocore") and r.levelno == logging.DEBUG for r in records), \
        "botocore's DEBUG lines were captured"
    assert any("S3 did not take" in r.getMessage() for r in records), "the outage was logged"
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")  # with tracebacks and stack info
    haystacks = {"logs": "\n".join(formatter.format(r) for r in records) + everything_at_debug.text,
                 "events": json.dumps(cluster.events()),
                 "qualifications": json.dumps([cluster.qualification(n) for n in ("with-secret", "from-env")]),
                 "writes to the API server": json.dumps([r.body for r in emulator.write_log.records()])}
    leaks = [f"{secret_name} ({form[:6]}...) in {where}"
             for secret_name, value in [*SECRET_KEYS.items(), *ENV_KEYS.items()]
             for form in _forms(value) for where, text in haystacks.items() if form in text]
    assert leaks == [], leaks


def test_signed_request_forms_are_redacted_whatever_their_value(caplog: pytest.LogCaptureFixture) -> None:
    """Keys that rotate (web identity, instance roles) are never seen by the operator: their forms go all the same."""
    redaction.install()
    caplog.set_level(logging.DEBUG)
    line = ("headers={'X-Amz-Security-Token': b'ROTATING-TOKEN-123456', 'Authorization': b'AWS4-HMAC-SHA256 "
            "Credential=ASIAROTATINGKEY99/20261129/us-east-1/s3/aws4_request, SignedHeaders=host, "
            "Signature=0123456789abcdef'}\nx-amz-security-token:ROTATING-TOKEN-123456")
    logging.getLogger("botocore.endpoint").debug("Sending http request: %s", line)
    logging.getLogger("accelqual.example").info("an ordinary line keeps Credential=what-it-says")

    botocore_line, ours = (r.getMessage() for r in caplog.records[-2:])
    assert "ROTATING-TOKEN" not in botocore_line and "ASIAROTATINGKEY99" not in botocore_line
    assert "0123456789abcdef" not in botocore_line and botocore_line.count(redaction.REDACTED) == 4
    assert ours == "an ordinary line keeps Credential=what-it-says"
