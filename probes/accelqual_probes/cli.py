"""`accelqual probe`: run the standard's checks on this machine (and in probe pods).

Exit status: 0 pass, 1 fail, 2 inconclusive, error, or a request that cannot run
(bad flag, unknown check id or device, malformed profile, bad `--inject`), which is
reported as one line on stderr, never a traceback.

Pod mode (`--pod`, how the operator's probe pods run it): progress as plain lines on
stderr; the full `ProbeReport` JSON as the last stdout line, prefixed with
`schema.REPORT_MARKER`; the compact verdict (`schema.termination_message`, <= 4 KiB)
written to `--termination-log` (default /dev/termination-log, skipped if not writable).
Environment: `NODE_NAME` (node name), `ACCELQUAL_PROFILE_JSON` (a CardProfile as
`{"name", "spec"}`), `ACCELQUAL_INJECT` (faults, comma-separated),
`ACCELQUAL_EXPECT_DEVICES` (the node's expected device count), `ACCELQUAL_CPU_THREADS`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn, TextIO

from accelqual_probes.catalog import Suite
from accelqual_probes.faults import ENV_INJECT, FAULT_SYNTAX, FaultPlan, FaultSpecError
from accelqual_probes.schema import REPORT_MARKER, OverallVerdict, ProbeReport, termination_message
from accelqual_probes.selection import ENV_PROFILE_JSON

ENV_EXPECT_DEVICES = "ACCELQUAL_EXPECT_DEVICES"
ENV_NODE_NAME = "NODE_NAME"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
EXIT_CODES = {OverallVerdict.PASS: 0, OverallVerdict.FAIL: 1, OverallVerdict.INCONCLUSIVE: 2}
DEVICE_CHOICES = ("auto", "cpu", "cuda", "npu", "mlu", "xpu", "musa")


class UsageError(Exception):
    """A command line that cannot run; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _id_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive number")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 <= number < 1e7:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds")
    return number


def _count(value: str) -> int:
    if not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a device count")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="accelqual probe", description="Run the AI accelerator card standard's checks here.",
                     epilog="faults for --inject: " + "; ".join(FAULT_SYNTAX.values()))
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="device kind (default: auto)")
    parser.add_argument("--profile", default=None, metavar="NAME|auto|PATH",
                        help="card profile: built-in name, auto (default), or a YAML/JSON file")
    parser.add_argument("--suite", default=Suite.STANDARD.value, choices=[s.value for s in Suite])
    parser.add_argument("--checks", type=_id_list, default=None, metavar="IDS", help="comma-separated check ids")
    parser.add_argument("--skip-checks", type=_id_list, default=None, metavar="IDS")
    parser.add_argument("--json", default=None, metavar="PATH|-", help="write the report as JSON ('-': stdout)")
    parser.add_argument("--inject", action="append", default=[], metavar="FAULT",
                        help=f"inject a fault (repeatable; also ${ENV_INJECT}, comma-separated)")
    parser.add_argument("--expect-devices", type=_count, default=None, metavar="N",
                        help=f"devices the node should have (also ${ENV_EXPECT_DEVICES}; default: as detected)")
    parser.add_argument("--timeout-scale", type=_positive_float, default=1.0, metavar="F",
                        help="multiply every check's timeout by F")
    parser.add_argument("--burnin-seconds", type=_seconds, default=60.0, metavar="S",
                        help="duration of rel.burnin (full suite)")
    parser.add_argument("--node", default=None, metavar="NAME", help=f"node name (default: ${ENV_NODE_NAME})")
    parser.add_argument("--pod", action="store_true", help="probe-pod output: marked report line, termination log")
    parser.add_argument("--termination-log", default=DEFAULT_TERMINATION_LOG, metavar="PATH")
    parser.add_argument("--list-checks", action="store_true", help="list the registered checks and exit")
    return parser


def _expect_devices(args: argparse.Namespace) -> int | None:
    if args.expect_devices is not None:
        return int(args.expect_devices)
    raw = os.environ.get(ENV_EXPECT_DEVICES, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise UsageError(f"{ENV_EXPECT_DEVICES}={raw!r} is not a device count")
    return int(raw)


def list_checks(out: TextIO) -> int:
    from accelqual_probes.runner import load_registry

    registry, errors = load_registry()
    for definition in sorted(registry, key=lambda d: d.id):
        spec = definition.catalog_spec()
        suites = ",".join(s.value for s in Suite if s in spec.suites) or "-"
        accel = " accelerator-only" if spec.accelerator_only else ""
        out.write(f"{definition.id:24} {definition.category.value:14} {suites:22} {spec.title}{accel}\n")
    for error in errors:
        sys.stderr.write(f"accelqual probe: warning: {error}\n")
    return 0


def _write_termination_log(path: str, report: ProbeReport) -> None:
    try:
        Path(path).write_text(termination_message(report), encoding="utf-8")
    except OSError:
        pass  # not in a pod, or the path is not writable: the stdout report is the record


def main(argv: list[str], *, hard_exit: bool = True) -> int:
    """Run the probe CLI; returns the exit status.

    If a timed-out check's thread is still stuck after the report is out, the process
    ends with `os._exit` (when `hard_exit`), so a hung device cannot keep the pod alive.
    """
    try:
        return _main(argv, hard_exit=hard_exit)
    except UsageError as exc:
        sys.stderr.write(f"accelqual probe: error: {exc}\n")
        return 2


def _main(argv: list[str], *, hard_exit: bool) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.list_checks:
        return list_checks(sys.stdout)
    try:
        faults = FaultPlan.from_sources(args.inject)
    except FaultSpecError as exc:
        raise UsageError(f"--inject: {exc}") from None

    from accelqual_probes import lifecycle
    from accelqual_probes.runner import ProbeRequest, ProbeUsageError, execute, prepare

    request = ProbeRequest(
        device=args.device, profile=args.profile, profile_json=os.environ.get(ENV_PROFILE_JSON),
        suite=Suite(args.suite), checks=args.checks, skip_checks=args.skip_checks, faults=faults,
        timeout_scale=args.timeout_scale, burnin_seconds=args.burnin_seconds,
        node=args.node or os.environ.get(ENV_NODE_NAME) or None, expect_devices=_expect_devices(args),
    )
    json_to_stdout = args.json == "-"
    from accelqual_probes.console import LineConsole, RichConsole

    console: LineConsole | RichConsole
    if args.pod:
        console = LineConsole(sys.stderr)
    else:
        console = RichConsole(sys.stderr if json_to_stdout else sys.stdout)
    try:
        run = prepare(request)
    except ProbeUsageError as exc:
        raise UsageError(str(exc)) from None
    for error in run.plugin_errors:
        sys.stderr.write(f"accelqual probe: warning: {error}\n")
    try:
        report = execute(run, console)
    finally:
        run.close()
    console.finished(report)
    written = _emit(args, report)
    # A report that could not be written where asked is no evidence: inconclusive.
    code = EXIT_CODES[report.verdict] if written else 2
    if hard_exit and lifecycle.abandoned_threads():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _emit(args: argparse.Namespace, report: ProbeReport) -> bool:
    """Write the report where asked; False when the --json file could not be written."""
    written = True
    document = report.to_json()
    if args.json == "-":
        sys.stdout.write(document + "\n")
    elif args.json:
        try:
            Path(args.json).write_text(document + "\n", encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"accelqual probe: error: cannot write {args.json}: {exc.strerror}\n")
            written = False
    if args.pod:
        _write_termination_log(args.termination_log, report)
        # Last: the operator takes the last marked stdout line as the report.
        sys.stdout.write(REPORT_MARKER + document + "\n")
    sys.stdout.flush()
    return written
