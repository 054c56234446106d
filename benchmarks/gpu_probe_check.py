"""Probe fidelity on a GPU machine: run the standard suite, print measured vs nominal.

One command on the accelerator host (the repository checked out, its venv built with a
CUDA torch):

    python benchmarks/gpu_probe_check.py                       # cuda, profile auto, standard suite
    python benchmarks/gpu_probe_check.py --suite quick --json /tmp/gpu-report.json

It prints dense GEMM TFLOPS per dtype, HBM copy bandwidth, host-link copies and
all-reduce bus bandwidth next to the card profile's nominal values and their ratio,
then the verdict of every check that did not pass. Exit status is the probe's:
0 pass, 1 fail, 2 inconclusive or no accelerator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from accelqual_probes.catalog import GEMM_DTYPES, Suite
from accelqual_probes.cli import EXIT_CODES
from accelqual_probes.console import LineConsole
from accelqual_probes.profiles import CardProfileSpec
from accelqual_probes.runner import ProbeRequest, ProbeUsageError, execute, prepare
from accelqual_probes.schema import CheckResult, ProbeReport, Verdict


def _value(result: CheckResult | None, metric: str) -> list[tuple[int | None, float]]:
    if result is None:
        return []
    return [(r.device, r.value) for r in result.readings() if r.metric == metric]


def _nominal_rows(report: ProbeReport, profile: CardProfileSpec) -> list[tuple[str, str, float | None, str]]:
    """(label, check id, nominal, unit) for every figure worth comparing with the datasheet."""
    rows: list[tuple[str, str, float | None, str]] = []
    for dtype in GEMM_DTYPES:
        peak = profile.peak_tflops.get("fp64_tensor" if dtype == "fp64" and "fp64_tensor" in profile.peak_tflops
                                       else dtype)
        rows.append((f"GEMM {dtype}", f"perf.gemm.{dtype}", peak, "TFLOPS"))
    rows.append(("HBM copy", "perf.membw", profile.memory_bandwidth_gbs, "GB/s"))
    link = profile.host_link.gbps if profile.host_link else None
    rows.append(("host->device", "gen.h2d", link, "GB/s"))
    rows.append(("device->host", "gen.d2h", link, "GB/s"))
    rows.append(("all-reduce bus", "perf.allreduce", profile.interconnect_gbs, "GB/s"))
    return rows


METRICS = {"TFLOPS": "tflops", "GB/s": "gbps"}


def print_summary(report: ProbeReport, profile: CardProfileSpec) -> None:
    checks = {c.id: c for c in report.checks}
    print(f"{report.inventory.count} x {report.inventory.model} | driver {report.inventory.driver_version} | "
          f"{report.inventory.runtime_version} | profile {report.profile} ({report.suite})")
    print(f"{'figure':16} {'device':>6} {'measured':>14} {'nominal':>10} {'ratio':>7}  verdict")
    for label, check_id, nominal, unit in _nominal_rows(report, profile):
        result = checks.get(check_id)
        metric = "busbw_gbps" if check_id == "perf.allreduce" else METRICS[unit]
        values = _value(result, metric)
        verdict = result.verdict.value if result is not None else "not run"
        if not values:
            print(f"{label:16} {'-':>6} {'-':>14} {_fmt(nominal):>10} {'-':>7}  {verdict}")
            continue
        for device, value in values:
            ratio = f"{value / nominal:.2f}" if nominal else "-"
            where = "node" if device is None else str(device)
            measured = f"{value:.1f} {unit}"
            print(f"{label:16} {where:>6} {measured:>14} {_fmt(nominal):>10} {ratio:>7}  {verdict}")
    others = [c for c in report.checks if c.verdict not in (Verdict.PASS,)]
    if others:
        print("\nchecks that did not pass:")
        for result in others:
            print(f"  {result.id:22} {result.verdict.value:5} {result.reason[:160]}")
    print(f"\nverdict {report.verdict.value} in {report.duration_seconds:.0f}s: {report.reason[:200]}")


def _fmt(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cuda", help="device kind (default: cuda)")
    parser.add_argument("--profile", default=None, help="card profile: NAME, auto (default) or a file")
    parser.add_argument("--suite", default="standard", choices=[s.value for s in Suite])
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = parser.parse_args(argv)
    try:
        run = prepare(ProbeRequest(device=args.device, profile=args.profile, suite=Suite(args.suite)))
    except ProbeUsageError as exc:
        print(f"gpu_probe_check: {exc}", file=sys.stderr)
        return 2
    if not run.backend.accelerator:
        print("gpu_probe_check: no accelerator here; this check is meant for a GPU machine", file=sys.stderr)
        run.close()
        return 2
    try:
        report = execute(run, LineConsole(sys.stderr))
    finally:
        run.close()
    if args.json is not None:
        args.json.write_text(report.to_json() + "\n", encoding="utf-8")
    print_summary(report, run.profile)
    return EXIT_CODES[report.verdict]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
