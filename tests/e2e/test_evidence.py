"""Evidence in S3 end to end: digests recorded everywhere, the durable outbox across an outage and a restart,
credentials from boto3's default chain, and the outbox's ConfigMap layout against the emulated API server."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from accelqual.adapters.evidence import S3Credentials, S3Evidence
from accelqual.adapters.kube import MERGE_PATCH, KubeClient
from accelqual.handlers.outbox import SEGMENT_LIMIT, EvidenceOutbox, OutboxObject
from accelqual.runtime import OperatorOptions
from accelqual.sim.cluster import BUCKET, SimulatedCluster
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from accelqual.sim.server import EmulatorServer

from tests.e2e.helpers import condition, qualification, sha256, sim_nodes, wait_until

OUTBOX_SELECTOR = "app.kubernetes.io/component=evidence-outbox"


def _fast_backoff(options: OperatorOptions) -> OperatorOptions:
    return replace(options, config=replace(options.config, evidence_backoff_max=1.0))


@pytest.fixture
def quick_retry_cluster() -> Iterator[SimulatedCluster]:
    """A simulated cluster whose operator retries S3 at least every second (outage tests stay short)."""
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.3), kubelet_interval=0.05,
                          operator_options=_fast_backoff) as sim:
        yield sim




def outbox_configmaps(cluster: SimulatedCluster) -> list[dict[str, Any]]:
    return cluster.api.list_all(f"/api/v1/namespaces/{cluster.namespace}/configmaps", label_selector=OUTBOX_SELECTOR)


def probe_pods(cluster: SimulatedCluster) -> list[dict[str, Any]]:
    return cluster.pods("app.kubernetes.io/component=probe")


def assert_run_evidence_complete(cluster: SimulatedCluster, status: dict[str, Any], nodes: list[str]) -> None:
    """Every node report, the summary and the human report are in S3 with the digests that name them."""
    assert cluster.s3 is not None
    run = status["runId"]
    summary_body = cluster.s3.read(BUCKET, f"runs/e2e/{run}/summary.json")
    assert status["reportURI"] == f"s3://{BUCKET}/runs/e2e/{run}/summary.json"
    assert sha256(summary_body) == status["reportSHA256"]
    summary = json.loads(summary_body)
    rows = {row["node"]: row for row in summary["nodes"]}
    assert sorted(rows) == sorted(nodes)
    annotations = {name: obj["metadata"].get("annotations") or {} for name, obj in cluster.nodes().items()}
    for node in nodes:
        body = cluster.s3.read(BUCKET, f"runs/e2e/{run}/nodes/{node}.json")
        assert sha256(body) == rows[node]["reportSha256"] == annotations[node]["accelqual.io/report-sha256"]
        assert annotations[node]["accelqual.io/report-uri"] == f"s3://{BUCKET}/runs/e2e/{run}/nodes/{node}.json"
        assert json.loads(body)["node"] == node
    human = summary["humanReport"]
    assert human["key"] == f"runs/e2e/{run}/report.md"
    markdown = cluster.s3.read(BUCKET, human["key"])
    assert sha256(markdown) == human["sha256"]
    assert f"run `{run}`" in markdown.decode()


def test_run_evidence_is_in_s3_with_every_digest_recorded(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(4, faults={2: ["slow-memory=0.25"]}))
    cluster.start_operator()
    cluster.apply(qualification(report=cluster.report_spec()))

    status = cluster.wait_for_phase("e2e", timeout=60)["status"]

    assert status["phase"] == "Completed"
    assert status["evidenceBacklog"] == 0
    assert_run_evidence_complete(cluster, status, [f"node-{i}" for i in range(4)])
    assert cluster.s3 is not None
    summary = json.loads(cluster.s3.read(BUCKET, f"runs/e2e/{status['runId']}/summary.json"))
    # Traceable: versions, the profile's nominal specs and the rule, basis and limit of each check.
    assert summary["operatorVersion"]
    assert summary["probeVersions"] == ["modelled"]
    profile = summary["profiles"]["cpu-reference"]
    assert profile["source"] == "built-in"
    assert profile["spec"]["relativeToReference"] is True
    assert profile["thresholds"]["perf.membw"]["rule"]["minFraction"] > 0
    failed = {row["node"]: row for row in summary["nodes"]}["node-2"]
    membw = failed["checks"]["perf.membw"]
    assert membw["verdict"] == "fail"
    assert membw["value"] < membw["min"]
    assert "<" in membw["reason"]
    # The human report names the failure with its measured value and limit.
    markdown = cluster.s3.read(BUCKET, summary["humanReport"]["key"]).decode()
    assert "| node-2 | fail | perf.membw |" in markdown
    assert outbox_configmaps(cluster) == []  # S3 answered: the outbox was never written


def test_s3_outage_across_an_operator_restart_loses_nothing_and_the_backlog_drains(
        quick_retry_cluster: SimulatedCluster) -> None:
    cluster = quick_retry_cluster
    assert cluster.s3 is not None
    nodes = [f"node-{i}" for i in range(5)]
    cluster.add_nodes(sim_nodes(5, faults={1: ["residual-memory"]}))
    cluster.s3.stop()  # S3 is down for the whole run
    cluster.start_operator()
    cluster.apply(qualification(report=cluster.report_spec()))

    status = cluster.wait_for_phase("e2e", timeout=60)["status"]
    # The run completes; its 5 node reports, human report and summary wait in the outbox.
    assert status["phase"] == "Completed"
    assert status["evidenceBacklog"] == 7
    assert condition(cluster.qualification("e2e"), "Degraded")["reason"] == "EvidenceBacklog"
    assert status["reportSHA256"]
    segments = outbox_configmaps(cluster)
    assert segments, "the waiting evidence is in ConfigMaps"
    assert all(cm["metadata"]["ownerReferences"][0]["name"] == "e2e" for cm in segments)
    # The probe pods are released: the outbox, not the pods, holds the evidence now.
    wait_until("probe pods deleted", lambda: probe_pods(cluster) == [], timeout=20, poll=0.2)

    cluster.server.emulator.reset_stats()
    cluster.restart_operator()  # the operator's memory is gone; S3 is still down

    wait_until("the new operator reads its outbox back from the cluster",
               lambda: cluster.server.emulator.stats().get(("list", "configmaps", None), 0) > 0, poll=0.2)
    metric = cluster.metrics.registry.get_sample_value
    wait_until("the new operator tries S3 and fails", lambda: metric("accelqual_evidence_uploads_total",
                                                                      {"result": "failed"}), poll=0.2)
    assert cluster.qualification("e2e")["status"]["evidenceBacklog"] == 7
    assert metric("accelqual_evidence_backlog", {"qualification": "e2e"}) == 7
    cluster.s3.start()

    wait_until("outbox drained", lambda: cluster.qualification("e2e")["status"]["evidenceBacklog"] == 0, poll=0.2)
    status = cluster.qualification("e2e")["status"]
    assert status["phase"] == "Completed"
    assert condition(cluster.qualification("e2e"), "Degraded")["reason"] == "NodesFailed"
    assert_run_evidence_complete(cluster, status, nodes)
    wait_until("outbox ConfigMaps deleted", lambda: outbox_configmaps(cluster) == [], timeout=10, poll=0.2)
    reasons = [e["reason"] for e in cluster.events() if e["involvedObject"]["name"] == "e2e"]
    assert "EvidenceBacklog" in reasons
    assert "EvidenceDelivered" in reasons


def test_without_a_secret_the_operator_uses_the_default_credential_chain(
        cluster: SimulatedCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    report = {k: v for k, v in cluster.report_spec().items() if k != "credentialsSecret"}
    cluster.add_nodes(sim_nodes(1))
    cluster.start_operator()
    cluster.apply(qualification(report=report))

    status = cluster.wait_for_phase("e2e", timeout=60)["status"]

    assert status["evidenceBacklog"] == 0
    assert_run_evidence_complete(cluster, status, ["node-0"])
    reads = cluster.server.emulator.stats()
    assert not any(resource == "secrets" and verb == "get" for (verb, resource, _), _ in reads.items())


@pytest.fixture
def isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS configuration from this machine, and never the instance metadata service."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_irsa_web_identity_is_chosen_when_no_keys_are_given(isolated_aws_env: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    token = isolated_aws_env / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.projected-service-account-token")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/accelqual-evidence")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))

    store = S3Evidence("evidence", region=REGION)

    assert store.credential_source == "assume-role-with-web-identity"  # resolved without contacting STS


def test_env_keys_reach_s3_through_the_default_chain(isolated_aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    with LocalS3() as s3:
        s3.create_bucket("chain")
        store = S3Evidence("chain", region=REGION, endpoint=s3.endpoint)

        digest = store.put("runs/a.json", b'{"ok": true}')

        assert store.credential_source == "env"
        assert s3.read("chain", "runs/a.json") == b'{"ok": true}'
        assert digest == sha256(b'{"ok": true}')


def test_keys_from_a_secret_are_used_as_given(isolated_aws_env: Path) -> None:
    store = S3Evidence("evidence", region=REGION, credentials=S3Credentials("id", "secret"))
    assert store.credential_source == "explicit"


# --- the outbox's layout against the emulated API server --------------------------------------------


@pytest.fixture
def api() -> Iterator[KubeClient]:
    with EmulatorServer() as server:
        kube = KubeClient.for_url(server.url)
        kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "accelqual-system"}})
        yield kube
        kube.close()


def _object(key: str, body: bytes) -> OutboxObject:
    return OutboxObject(key=key, body=body, content_type="application/json",
                        report={"bucket": "evidence", "prefix": "runs"}, queued_at="2026-11-29T12:00:00.000000Z")


def _incompressible(size: int, seed: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _configmap_data_bytes(cm: dict[str, Any]) -> int:
    """What the API server counts against its 1 MiB ConfigMap limit."""
    return sum(len(v.encode()) for v in (cm.get("data") or {}).values()) + sum(
        len(base64.b64decode(v)) for v in (cm.get("binaryData") or {}).values())


def test_outbox_splits_big_objects_over_configmaps_under_the_size_limit_and_restores_them(api: KubeClient) -> None:
    box = EvidenceOutbox(api, "accelqual-system", "pool-a", owner_uid="uid-1")
    box.load()
    small = [_object(f"runs/pool-a/r1/nodes/n{i}.json", json.dumps({"node": i, "x": "y" * 2000}).encode())
             for i in range(40)]
    big = _object("runs/pool-a/r1/nodes/huge.json", _incompressible(2_300_000, 1))  # > 2 segments compressed

    box.add([*small, big])

    configmaps = api.list_all("/api/v1/namespaces/accelqual-system/configmaps", label_selector=OUTBOX_SELECTOR)
    assert len(configmaps) >= 3
    assert all(_configmap_data_bytes(cm) <= SEGMENT_LIMIT < 1024 * 1024 for cm in configmaps)
    fresh = EvidenceOutbox(api, "accelqual-system", "pool-a")
    fresh.load()  # what a restarted operator reads
    assert {o.key: o.body for o in fresh.objects()} == {o.key: o.body for o in [*small, big]}
    assert len(fresh) == 41

    fresh.remove([o.key for o in small] + [big.key])

    assert api.list_all("/api/v1/namespaces/accelqual-system/configmaps", label_selector=OUTBOX_SELECTOR) == []


def test_outbox_replaces_an_object_queued_again_and_keeps_qualifications_apart(api: KubeClient) -> None:
    a = EvidenceOutbox(api, "accelqual-system", "pool-a")
    b = EvidenceOutbox(api, "accelqual-system", "pool-b")
    a.load()
    b.load()
    a.add([_object("runs/pool-a/r1/summary.json", b"first")])
    b.add([_object("runs/pool-b/r1/summary.json", b"other")])

    a.add([_object("runs/pool-a/r1/summary.json", b"second")])

    again = EvidenceOutbox(api, "accelqual-system", "pool-a")
    again.load()
    assert [(o.key, o.body) for o in again.objects()] == [("runs/pool-a/r1/summary.json", b"second")]
    other = EvidenceOutbox(api, "accelqual-system", "pool-b")
    other.load()
    assert [o.body for o in other.objects()] == [b"other"]


def test_outbox_drops_an_entry_whose_content_no_longer_matches_its_digest(api: KubeClient) -> None:
    box = EvidenceOutbox(api, "accelqual-system", "pool-a")
    box.load()
    box.add([_object("runs/pool-a/r1/nodes/n1.json", b'{"verdict": "fail"}'),
             _object("runs/pool-a/r1/nodes/n2.json", b'{"verdict": "pass"}')])
    (name,) = box.segment_names()
    cm = api.get(f"/api/v1/namespaces/accelqual-system/configmaps/{name}")
    index = json.loads(cm["data"]["index.json"])
    forged = next(e for e, r in index.items() if r["key"].endswith("n1.json"))
    api.patch(f"/api/v1/namespaces/accelqual-system/configmaps/{name}",
              {"binaryData": {forged: base64.b64encode(gzip.compress(b'{"verdict": "pass"}')).decode()}},
              MERGE_PATCH)

    reloaded = EvidenceOutbox(api, "accelqual-system", "pool-a")
    reloaded.load()

    assert [o.key for o in reloaded.objects()] == ["runs/pool-a/r1/nodes/n2.json"]


def test_events_say_which_check_failed_by_how_much_and_where_the_evidence_is(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(3, faults={1: ["slow-memory=0.25"]}))
    cluster.start_operator()
    cluster.apply(qualification(report=cluster.report_spec()))

    obj = cluster.wait_for_phase("e2e", timeout=60)

    run = obj["status"]["runId"]
    assert cluster.s3 is not None
    summary = json.loads(cluster.s3.read(BUCKET, f"runs/e2e/{run}/summary.json"))
    membw = {row["node"]: row for row in summary["nodes"]}["node-1"]["checks"]["perf.membw"]
    events = cluster.events()
    # What `kubectl describe node node-1` shows: the check, the measured value against its limit, the evidence.
    node_uid = cluster.nodes()["node-1"]["metadata"]["uid"]
    (failed,) = [e for e in events if e["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "node-1",
                                                               "uid": node_uid}]
    assert failed["type"] == "Warning"
    assert failed["reason"] == "QualificationFailed"
    message = failed["message"]
    assert f"perf.membw failed: measured {membw['value']:.4g} GB/s against limit >= {membw['min']:.4g} GB/s" \
        in message
    assert "% below it" in message
    assert f"evidence s3://{BUCKET}/runs/e2e/{run}/nodes/node-1.json" in message
    assert "tainted accelqual.io/failed" in message
    assert not [e for e in events if e["involvedObject"]["name"] in ("node-0", "node-2")]
    # The Qualification's own Events: the run started and completed, with the tally.
    on_qualification = {e["reason"]: e for e in events if e["involvedObject"]["kind"] == "Qualification"}
    assert on_qualification["RunStarted"]["involvedObject"]["uid"] == obj["metadata"]["uid"]
    assert on_qualification["RunCompleted"]["type"] == "Warning"
    assert "2 passed, 1 failed" in on_qualification["RunCompleted"]["message"]
