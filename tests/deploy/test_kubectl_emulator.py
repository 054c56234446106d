"""What the real kubectl needs from the emulated API server beyond `get`: `/openapi/v2` and client-side apply.

Contract tests of `sim.emu_openapi` and of the emulator's create/get/merge-patch path as
`kubectl apply` drives it (last-applied annotation, 'created' / 'unchanged' / 'configured'),
with the CRD's schema enforced by the server (422) since kubectl's document describes no kinds.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from accelqual.sim.emu_openapi import document_json
from accelqual.sim.server import EmulatorServer

from tests.deploy.manifests import EXAMPLES

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running


def _kubectl(kubectl: Path, config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl), "--kubeconfig", str(config), *args], input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def _protobuf_fields(data: bytes) -> dict[int, bytes]:
    """Top-level length-delimited fields of a protobuf message (all this document has)."""
    fields, i = {}, 0
    while i < len(data):
        tag, length = data[i], data[i + 1]
        assert tag & 7 == 2 and length < 128
        fields[tag >> 3] = data[i + 2:i + 2 + length]
        i += 2 + length
    return fields


def test_openapi_v2_is_served_as_protobuf_and_as_json(server: EmulatorServer) -> None:
    protobuf = urllib.request.Request(f"{server.url}/openapi/v2",
                                      headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    with urllib.request.urlopen(protobuf, timeout=10) as reply:
        fields = _protobuf_fields(reply.read())
    json_request = urllib.request.Request(f"{server.url}/openapi/v2", headers={"Accept": "application/json"})
    with urllib.request.urlopen(json_request, timeout=10) as reply:
        doc = yaml.safe_load(reply.read())

    assert fields[1] == b"2.0"
    assert _protobuf_fields(fields[2])[1].decode() == document_json()["info"]["title"]  # type: ignore[index]
    assert doc == document_json()


def test_kubectl_apply_creates_then_leaves_unchanged_then_configures(server: EmulatorServer, kubectl: Path,
                                                                     tmp_path: Path) -> None:
    config = server.write_kubeconfig(tmp_path / "kubeconfig")
    example = EXAMPLES / "qualification.yaml"
    changed = yaml.safe_load(example.read_text(encoding="utf-8"))
    changed["spec"]["suite"] = "quick"

    first = _kubectl(kubectl, config, "apply", "-f", str(example))
    again = _kubectl(kubectl, config, "apply", "-f", str(example))
    third = _kubectl(kubectl, config, "apply", "-f", "-", stdin=yaml.safe_dump(changed))

    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.strip() == "qualification.accelqual.io/h100-delivery-2026-11 created"
    assert again.stdout.strip() == "qualification.accelqual.io/h100-delivery-2026-11 unchanged"
    assert third.stdout.strip() == "qualification.accelqual.io/h100-delivery-2026-11 configured"
    stored = server.emulator.get("qualifications", None, "h100-delivery-2026-11")
    assert stored is not None
    assert stored["spec"]["suite"] == "quick"
    assert stored["metadata"]["generation"] == 2
    assert '"suite":"quick"' in stored["metadata"]["annotations"][LAST_APPLIED]


def test_kubectl_apply_of_every_example_manifest_succeeds(server: EmulatorServer, kubectl: Path,
                                                          tmp_path: Path) -> None:
    config = server.write_kubeconfig(tmp_path / "kubeconfig")
    for path in sorted(EXAMPLES.glob("*.yaml")):
        done = _kubectl(kubectl, config, "apply", "-f", str(path))
        assert done.returncode == 0, f"{path.name}: {done.stderr}"

    listed = _kubectl(kubectl, config, "get", "aq,cardprofiles", "-o", "name").stdout.split()
    assert "cardprofile.accelqual.io/l40s-48gb" in listed
    assert len([n for n in listed if n.startswith("qualification.")]) == 4


def test_kubectl_apply_of_an_invalid_qualification_is_refused_by_the_server(server: EmulatorServer, kubectl: Path,
                                                                            tmp_path: Path) -> None:
    config = server.write_kubeconfig(tmp_path / "kubeconfig")
    bad = yaml.safe_load((EXAMPLES / "qualification.yaml").read_text(encoding="utf-8"))
    bad["spec"]["suite"] = "fastest"

    done = _kubectl(kubectl, config, "apply", "-f", "-", stdin=yaml.safe_dump(bad))

    assert done.returncode != 0
    assert "is invalid" in done.stderr and "suite" in done.stderr
    assert server.emulator.get("qualifications", None, "h100-delivery-2026-11") is None
