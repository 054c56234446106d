"""Probe fidelity: each performance check's measurement next to the best reference measurement of this device.

    .venv/bin/python benchmarks/probe_fidelity.py --json /tmp/fidelity.json          # here (CPU), a few minutes
    python benchmarks/probe_fidelity.py --device cuda --rounds 3 --suites quick --json /tmp/fidelity-gpu.json

For each performance check the device runs (`perf.gemm.<dtype>` for every dtype it
supports, `perf.membw`, and on GPUs `gen.h2d`, `gen.d2h` and, with two or more cards,
`perf.allreduce`) the probe runs through its real code path (runner, lifecycle thread,
the check's own sizing, the device backend) and, in the same process and alternating with
it (probe first in even rounds, reference first in odd ones), the best reference this
script can find. A sweep over candidates (numpy/BLAS and `torch.mm` into a preallocated
output at several square and rectangular shapes on CPU; `torch.mm` through cuBLAS and
cuBLASLt at large shapes on GPU; numpy copies in both array layouts and torch copies of
several sizes beyond the caches; a device-to-device copy; pinned host copies; NCCL
all-reduce) times the close ones again in interleaved passes, then the three fastest in
three more; the one with the best median over those passes is the reference, and only it
is timed in the rounds. Both sides take the same number of timed samples per round (the
probe's number of timed rounds) and samples of about the same length (the probe's round
length: GEMMs on a CPU, and copies, whose probe round is one copy of its own arrays): a
reference that counted the better of two kernels per round, or the best of more or
shorter samples, would win by a statistic of the noise, not by being faster. In each
round each side counts its best sample (contention only ever slows a measurement down);
the judged ratio is the median over rounds of probe / reference, because both sides of a
round run within seconds of each other and the host's slow phases, which last seconds,
cancel out. The ratio of the two sides' best rounds is
printed beside it. The reference is the fastest of many candidates, so the ratio errs
against the probe.

The CPU probe runs single-threaded unless ACCELQUAL_CPU_THREADS says otherwise; the
references run at the same thread count (`--threads`). Afterwards the suites named by
`--suites` (default quick and standard) run as `accelqual probe` subprocesses and their
wall time is printed. The last line is a one-line summary of ratios and targets met;
exit status 0 when all targets are met, 1 when one is missed, 2 when the device is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelqual_probes import reference as blas
from accelqual_probes.catalog import BY_ID, GEMM_DTYPES, Suite
from accelqual_probes.checks.general import CopyParams
from accelqual_probes.checks.performance import BandwidthParams, GemmParams, timed_rounds
from accelqual_probes.devices.cpu import ENV_CPU_THREADS
from accelqual_probes.hostinfo import describe_cpu, last_level_cache_bytes, read_meminfo
from accelqual_probes.registry import Sizing
from accelqual_probes.runner import PreparedRun, ProbeRequest, ProbeUsageError, execute, prepare
from accelqual_probes.schema import CheckResult, Verdict

MIB = 1 << 20
#: STREAM's rule: each array at least this many times the last-level cache.
STREAM_CACHE_MULTIPLE = 4
#: Targets of issue 8: probe / best reference, per device class and check family.
TARGETS = {"cpu": {"gemm": 0.95, "membw": 0.90}, "accelerator": {"gemm": 0.97, "membw": 0.92}}
#: The fastest candidates after the sweep's passes are timed again, in this many interleaved
#: passes, and the one with the best median of those passes is the reference of every round.
FINALISTS = 3
FINAL_PASSES = 3
#: A reference candidate whose single call would take longer than this is not tried.
MAX_CALL_S = 0.6
#: Candidates within this share of the fastest after the first pass are timed again, in
#: this many interleaved passes, before the fastest are kept.
CONTENDER_SHARE = 0.6
EXTRA_PASSES = 2
#: Seconds one timed reference sample lasts at least on an accelerator: batches long enough to hide
#: the synchronisation. On a CPU a reference sample lasts as long as one of the probe's timed rounds
#: (`GemmParams.round_s`, the calls it needs rounded up, as `timing.calibrate` does): the best of
#: many short samples is faster than the best of as many longer ones, which is a statistic, not a
#: faster kernel.
SAMPLE_S = {"accelerator": 0.05}

Run = Callable[[int], None]


@dataclass
class Candidate:
    """One way of doing a check's work outside the probe: `open()` allocates and returns (run, close)."""

    name: str
    work: float  # FLOPs or bytes per call, counted as the probe counts them
    open: Callable[[], tuple[Run, Callable[[], None]]]


@dataclass
class Subject:
    """One check under test: how to read the probe's value and how to do the same work by reference."""

    check_id: str
    metric: str
    unit: str
    scale: float  # work per second -> unit
    family: str  # gemm, membw, link, collective
    candidates: list[Candidate]
    #: Timed samples per round: the probe's own number of timed rounds, and like the probe's,
    #: fewer (at least 4) where they would take longer than `samples_for` allows.
    samples: int
    sample_s: float
    #: The probe's rule for its number of timed rounds given the seconds of one call (GEMM), if any.
    samples_for: Callable[[float], int] | None = None
    #: Whether the work spans every card (a collective): timing waits for all of them.
    all_devices: bool = False
    #: The probe's work in one timed round where it is one call of a fixed size (a copy of its
    #: arrays): a reference sample then lasts as long as that round, whatever the reference's size.
    probe_round_work: float | None = None


@dataclass
class Outcome:
    check_id: str
    unit: str
    family: str
    probe: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    reference_names: list[str] = field(default_factory=list)
    sweep: dict[str, float] = field(default_factory=dict)
    nominal: float | None = None
    target: float | None = None
    note: str = ""
    probe_reason: str = ""
    probe_sizes: list[str] = field(default_factory=list)
    probe_seconds: float = 0.0
    #: probe / reference of each round in which both sides measured.
    round_ratios: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """The judged ratio: the median of the rounds' ratios. Both sides of a round ran within
        seconds of each other, so the host's slow phases, which last seconds, cancel out."""
        return statistics.median(self.round_ratios) if self.round_ratios else None

    @property
    def ratio_of_bests(self) -> float | None:
        return max(self.probe) / max(self.reference) if self.probe and self.reference else None

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None or self.target is None else ratio >= self.target

    def to_json(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, Any]:
            if not values:
                return {}
            return {"best": max(values), "median": statistics.median(values), "worst": min(values),
                    "spread": (max(values) - min(values)) / max(values), "rounds": values}

        best_candidate = self.reference_names[self.reference.index(max(self.reference))] if self.reference else ""
        return {"check": self.check_id, "unit": self.unit, "family": self.family, "probe": stats(self.probe),
                "reference": {**stats(self.reference), "best_candidate": best_candidate,
                              "candidates": sorted(set(self.reference_names)), "sweep": self.sweep},
                "ratio": self.ratio, "round_ratios": self.round_ratios, "ratio_of_bests": self.ratio_of_bests,
                "nominal": self.nominal, "target": self.target, "met": self.met, "note": self.note,
                "probe_reason": self.probe_reason, "probe_sizes_by_round": self.probe_sizes,
                "probe_seconds_per_round": self.probe_seconds}


# -- timing (independent of the probe's own timing module) -------------------------------------------
def _seconds_per_call(run: Run, repeats: int, sync: Callable[[], None]) -> float:
    sync()
    started = time.perf_counter()
    run(repeats)
    sync()
    return (time.perf_counter() - started) / repeats


def _best_rate(run: Run, work: float, repeats: int, rounds: int, sync: Callable[[], None]) -> float:
    return max(work / _seconds_per_call(run, repeats, sync) for _ in range(rounds))


# -- reference candidates ------------------------------------------------------------------------------
def _gemm_shapes(accelerator: bool, dtype: str, tiny: bool) -> list[tuple[int, int, int]]:
    """(m, k, n) shapes: squares around the probe's sizes and two rectangles of a mid square's work."""
    if tiny:
        return [(64, 64, 64), (128, 128, 128)]
    if accelerator:
        squares = [2048, 4096, 8192] if dtype == "fp64" else [4096, 8192, 16384]
        mid = squares[1]
        return [(s, s, s) for s in squares] + [(mid, 2 * mid, mid), (2 * mid, mid // 2, 2 * mid)]
    # Every size the CPU probe may choose, smaller and intermediate ones, and deep/shallow rectangles.
    squares = [96, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 2560, 3072]
    return [(s, s, s) for s in squares] + [(128, 1024, 128), (512, 2048, 512), (1024, 256, 1024)]


def _gemm_candidates(device: torch.device, dtype: str, torch_dtype: torch.dtype, tiny: bool) -> list[Candidate]:
    accelerator = device.type != "cpu"
    out: list[Candidate] = []
    for m, k, n in _gemm_shapes(accelerator, dtype, tiny):
        shape = f"{m}x{k}x{n}"
        if accelerator:
            for library in ("cublas", "cublaslt"):
                kernel = {"int8": "torch._int_mm", "fp8": "torch._scaled_mm"}.get(dtype, "torch.mm")
                out.append(Candidate(f"{kernel}[{library}] {shape}", 2.0 * m * k * n,
                                     _torch_gemm(device, dtype, torch_dtype, (m, k, n), library)))
        else:
            kernel = {"int8": "torch._int_mm", "fp8": "torch._scaled_mm"}.get(dtype, "torch.mm")
            out.append(Candidate(f"{kernel}(out=) {shape}", 2.0 * m * k * n,
                                 _torch_gemm(device, dtype, torch_dtype, (m, k, n))))
            if dtype in blas.NP_DTYPES:
                out.append(Candidate(f"numpy.matmul(out=) {shape}", 2.0 * m * k * n, _numpy_gemm(dtype, m, k, n)))
    return out


def _torch_gemm(device: torch.device, dtype: str, torch_dtype: torch.dtype, shape: tuple[int, int, int],
                library: str | None = None) -> Callable[[], tuple[Run, Callable[[], None]]]:
    m, k, n = shape

    def open_() -> tuple[Run, Callable[[], None]]:
        gen = torch.Generator(device=device).manual_seed(3)
        if dtype == "int8":
            a = torch.randint(-8, 8, (m, k), generator=gen, dtype=torch.int8, device=device)
            b = torch.randint(-8, 8, (k, n), generator=gen, dtype=torch.int8, device=device)
            out = torch.empty(m, n, dtype=torch.int32, device=device)
            step: Callable[[], object] = lambda: torch._int_mm(a, b, out=out)  # noqa: E731
        elif dtype == "fp8":
            a = torch.rand(m, k, generator=gen, device=device).to(torch_dtype)
            b = torch.rand(n, k, generator=gen, device=device).to(torch_dtype).t()  # column-major
            one = torch.ones((), device=device)
            out = torch.empty(m, n, dtype=torch.float32, device=device)
            step = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float32, out=out)  # noqa: E731
        else:
            a = torch.rand(m, k, generator=gen, device=device).to(torch_dtype)
            b = torch.rand(k, n, generator=gen, device=device).to(torch_dtype)
            out = torch.empty(m, n, dtype=torch_dtype, device=device)
            step = lambda: torch.mm(a, b, out=out)  # noqa: E731

        def run(repeats: int) -> None:
            with _matmul_settings(device, dtype, library):
                for _ in range(repeats):
                    step()

        def close() -> None:
            nonlocal a, b, out
            del a, b, out
            _trim(device)

        return run, close

    return open_


@contextmanager
def _matmul_settings(device: torch.device, dtype: str, library: str | None) -> Iterator[None]:
    if device.type != "cuda":
        yield
        return
    tf32 = torch.backends.cuda.matmul.allow_tf32
    preferred = torch.backends.cuda.preferred_blas_library()
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    if library is not None:
        torch.backends.cuda.preferred_blas_library(library)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cuda.preferred_blas_library(preferred)


def _numpy_gemm(dtype: str, m: int, k: int, n: int) -> Callable[[], tuple[Run, Callable[[], None]]]:
    def open_() -> tuple[Run, Callable[[], None]]:
        rng = np.random.default_rng(3)
        np_dtype = blas.NP_DTYPES[dtype]
        a = rng.standard_normal((m, k)).astype(np_dtype)
        b = rng.standard_normal((k, n)).astype(np_dtype)
        out = np.empty((m, n), dtype=np_dtype)

        def run(repeats: int) -> None:
            for _ in range(repeats):
                np.matmul(a, b, out=out)

        return run, lambda: None

    return open_


def _copy_candidates(device: torch.device, probe_nbytes: int, tiny: bool) -> list[Candidate]:
    """STREAM copy (bytes counted 2x, read + write) at the probe's size and at other sizes far beyond the caches.

    On a CPU the arrays obey STREAM's rule: each at least four times the host's last-level
    cache (sysfs's figure), so that no part of a copy is served from cache. A 64 MiB copy on a
    host with a 32 MiB L3 ran at 33 GB/s in one run and at 25 in others, a cache's doing, not
    memory's (one of the earlier runs in docs/performance.md)."""
    if tiny:
        sizes = [4 * MIB, 8 * MIB]
    elif device.type == "cpu":
        llc = last_level_cache_bytes() or 0
        sizes = sorted({s for s in (64 * MIB, 128 * MIB, 256 * MIB, 512 * MIB) if s >= STREAM_CACHE_MULTIPLE * llc}
                       | {probe_nbytes})
    else:
        sizes = sorted({256 * MIB, 1024 * MIB, 4096 * MIB, probe_nbytes})
    out: list[Candidate] = []
    for nbytes in sizes:
        label = f"{nbytes // MIB} MiB"
        out.append(Candidate(f"torch copy_ {label}", 2.0 * nbytes, _torch_copy(device, nbytes)))
        if device.type == "cpu":
            # Both layouts: where the destination lies relative to the source moves memcpy's speed.
            out.append(Candidate(f"numpy copyto {label}", 2.0 * nbytes, _numpy_copy(nbytes, source_first=True)))
            out.append(Candidate(f"numpy copyto {label} (destination allocated first)", 2.0 * nbytes,
                                 _numpy_copy(nbytes, source_first=False)))
    return out


def _torch_copy(device: torch.device, nbytes: int) -> Callable[[], tuple[Run, Callable[[], None]]]:
    def open_() -> tuple[Run, Callable[[], None]]:
        src = torch.ones(nbytes // 4, device=device)
        dst = torch.zeros(nbytes // 4, device=device)

        def run(repeats: int) -> None:
            for _ in range(repeats):
                dst.copy_(src)

        def close() -> None:
            nonlocal src, dst
            del src, dst
            _trim(device)

        return run, close

    return open_


def _numpy_copy(nbytes: int, source_first: bool) -> Callable[[], tuple[Run, Callable[[], None]]]:
    def open_() -> tuple[Run, Callable[[], None]]:
        if source_first:
            src = np.ones(nbytes // 8)
            dst = np.zeros(nbytes // 8)
        else:
            dst = np.zeros(nbytes // 8)
            src = np.ones(nbytes // 8)

        def run(repeats: int) -> None:
            for _ in range(repeats):
                np.copyto(dst, src)

        return run, lambda: None

    return open_


def _link_candidates(device: torch.device, to_device: bool, tiny: bool) -> list[Candidate]:
    """Pinned host <-> device copies (bytes counted once), several sizes."""
    sizes = [16 * MIB] if tiny else [64 * MIB, 256 * MIB, 1024 * MIB]

    def opener(nbytes: int) -> Callable[[], tuple[Run, Callable[[], None]]]:
        def open_() -> tuple[Run, Callable[[], None]]:
            host = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
            dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
            src, dst = (host, dev) if to_device else (dev, host)

            def run(repeats: int) -> None:
                for _ in range(repeats):
                    dst.copy_(src, non_blocking=True)

            return run, lambda: _trim(device)

        return open_

    return [Candidate(f"pinned copy_ {s // MIB} MiB", float(s), opener(s)) for s in sizes]


def _allreduce_candidates(count: int, tiny: bool) -> list[Candidate]:
    """torch.cuda.nccl all-reduce over every card; work counted as bus bytes, as nccl-tests do."""
    from torch.cuda import nccl

    sizes = [16 * MIB] if tiny else [64 * MIB, 256 * MIB, 1024 * MIB]

    def opener(nbytes: int) -> Callable[[], tuple[Run, Callable[[], None]]]:
        def open_() -> tuple[Run, Callable[[], None]]:
            tensors = [torch.ones(nbytes // 4, device=f"cuda:{d}") for d in range(count)]

            def run(repeats: int) -> None:
                for _ in range(repeats):
                    nccl.all_reduce(tensors)  # type: ignore[no-untyped-call]

            return run, lambda: _trim(torch.device("cuda"))

        return open_

    factor = 2 * (count - 1) / count
    return [Candidate(f"nccl all_reduce {s // MIB} MiB", s * factor, opener(s)) for s in sizes]


def _trim(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- the subjects of this device --------------------------------------------------------------------
def subjects(run: PreparedRun, tiny: bool) -> list[Subject]:
    backend = run.backend
    device = backend.torch_device(0)
    sizing = _sizing(run)
    gemm = GemmParams.for_run(sizing)
    sample_s = SAMPLE_S["accelerator"] if backend.accelerator else gemm.round_s
    interleaved = run.profile.relative_to_reference  # the probe times its in-run reference in between

    def gemm_samples(call_s: float) -> int:
        return timed_rounds(gemm, call_s, interleaved)

    out = [Subject(f"perf.gemm.{d}", "tflops", "TFLOPS", 1e12, "gemm",
                   _gemm_candidates(device, d, backend.torch_dtype(d), tiny), gemm.rounds, sample_s, gemm_samples)
           for d in GEMM_DTYPES]
    bandwidth = BandwidthParams.for_run(sizing)
    # The probe copies its arrays once per timed round: a reference sample lasts as long (two
    # copies of half the size): the best of shorter samples would win by a statistic of the noise.
    out.append(Subject("perf.membw", "gbps", "GB/s", 1e9, "membw",
                       _copy_candidates(device, bandwidth.nbytes, tiny), bandwidth.rounds, 0.0,
                       probe_round_work=2.0 * bandwidth.nbytes))
    if backend.accelerator and device.type == "cuda":
        link = CopyParams.for_run(sizing)
        for check_id, to_device in (("gen.h2d", True), ("gen.d2h", False)):
            out.append(Subject(check_id, "gbps", "GB/s", 1e9, "link", _link_candidates(device, to_device, tiny),
                               link.rounds, sample_s))
        if backend.device_count() >= 2:
            out.append(Subject("perf.allreduce", "busbw_gbps", "GB/s", 1e9, "collective",
                               _allreduce_candidates(backend.device_count(), tiny), 5, sample_s, all_devices=True))
    return out


def _sizing(run: PreparedRun) -> Sizing:
    return Sizing(device_kind=run.backend.kind, accelerator=run.backend.accelerator, suite=run.request.suite)


# -- measuring ----------------------------------------------------------------------------------------
def probe_once(run: PreparedRun, subject: Subject) -> tuple[float | None, CheckResult]:
    """The check through the runner (its real path); its value on device 0 (or the node's)."""
    report = execute(dataclasses.replace(run, check_ids=[subject.check_id]))
    result = report.checks[0]
    values = [r.value for r in result.readings() if r.metric == subject.metric and r.device in (0, None)]
    return (values[0] if values else None), result


def sweep(subject: Subject, sync: Callable[[], None]) -> tuple[dict[str, float], str]:
    """Each candidate's best rate (unit per second; too-slow ones are left out) and the chosen reference.

    A shared host has slow phases lasting seconds: a candidate timed only during one would
    look slower than it is. So after a first pass over every candidate the contenders (within
    `CONTENDER_SHARE` of the fastest) are timed again in `EXTRA_PASSES` interleaved passes,
    and the `FINALISTS` fastest of them in `FINAL_PASSES` more; the reference is the finalist
    with the best median over those final passes (a median, so that one lucky sample does not
    pick a kernel that is not faster).
    """
    rates: dict[str, float] = {}
    last_rate: dict[str, float] = {}
    for candidate in sorted(subject.candidates, key=lambda c: c.work):
        family = candidate.name.split(" ")[0]
        if family in last_rate and candidate.work / last_rate[family] > MAX_CALL_S:
            continue  # a larger problem of a kernel family already too slow for the budget
        try:
            rate = _time_candidate(candidate, subject, sync)
        except RuntimeError as exc:  # a shape or dtype this kernel does not take
            rates[candidate.name + f" (failed: {str(exc).splitlines()[0][:60]})"] = 0.0
            continue
        last_rate[family] = rate
        if candidate.work / rate <= MAX_CALL_S:
            rates[candidate.name] = rate / subject.scale
    fastest = max(rates.values(), default=0.0)
    contenders = [c for c in subject.candidates if rates.get(c.name, 0.0) >= CONTENDER_SHARE * fastest > 0]
    for _ in range(EXTRA_PASSES):
        for candidate in contenders:
            rates[candidate.name] = max(rates[candidate.name],
                                        _time_candidate(candidate, subject, sync) / subject.scale)
    ranked = sorted(contenders, key=lambda c: -rates[c.name])[:FINALISTS]
    finals: dict[str, list[float]] = {c.name: [] for c in ranked}
    for _ in range(FINAL_PASSES if len(ranked) > 1 else 0):
        for candidate in ranked:
            rate = _time_candidate(candidate, subject, sync) / subject.scale
            finals[candidate.name].append(rate)
            rates[candidate.name] = max(rates[candidate.name], rate)
    chosen = max(finals, key=lambda name: statistics.median(finals[name] or [rates[name]]), default="")
    return rates, chosen


def _time_candidate(candidate: Candidate, subject: Subject, sync: Callable[[], None]) -> float:
    """Work per second of one candidate: opened, warmed up, the best of a few samples, closed."""
    run, close = candidate.open()
    try:
        run(1)
        single = _seconds_per_call(run, 1, sync)
        if single > MAX_CALL_S:
            return candidate.work / single
        repeats = _repeats(subject, single)
        return max(candidate.work / single, _best_rate(run, candidate.work, repeats, 3, sync))
    finally:
        close()


def _repeats(subject: Subject, call_s: float) -> int:
    """Calls in one timed sample of at least `subject.sample_s` seconds, rounded up as `timing.calibrate`
    does; where the probe's round is one call of its own size, the nearest count (a copy of half the
    probe's arrays twice, not three times)."""
    calls = subject.sample_s / max(call_s, 1e-7)
    return max(1, round(calls) if subject.probe_round_work is not None else math.ceil(calls))


def measure(run: PreparedRun, subject: Subject, rounds: int, log: Callable[[str], None],
            worker: ThreadPoolExecutor) -> Outcome | None:
    """Probe and reference in alternating rounds; the reference runs in `worker` (see `reference_worker`).

    Both sides count the best of the same number of timed samples per round, each sample
    about as long as the probe's: the reference is one kernel (the sweep's choice), so
    neither side takes the better of two noisy values where the other takes one.
    """
    outcome = Outcome(subject.check_id, subject.unit, subject.family)
    value, result = probe_once(run, subject)  # warm-up, and tells whether the device runs this check
    if result.verdict is Verdict.SKIP:
        log(f"{subject.check_id}: skipped by the probe: {result.reason}")
        return None
    if value is None:
        outcome.note = f"probe {result.verdict.value}: {result.reason[:160]}"
        return outcome
    sync = lambda: run.backend.synchronize(None if subject.all_devices else 0)  # noqa: E731
    if subject.probe_round_work is not None:
        subject = dataclasses.replace(subject, sample_s=subject.probe_round_work / (value * subject.scale))
    outcome.sweep, chosen_name = worker.submit(sweep, subject, sync).result()
    chosen = next((c for c in subject.candidates if c.name == chosen_name), None)
    if chosen is None:
        outcome.note = "no reference candidate ran"
        return outcome
    call_s = chosen.work / (outcome.sweep[chosen.name] * subject.scale)
    repeats = _repeats(subject, call_s)
    samples = subject.samples if subject.samples_for is None else subject.samples_for(call_s)
    opened: list[tuple[Run, Callable[[], None]]] = []

    def open_reference() -> None:
        reference_run, close = chosen.open()
        opened.append((reference_run, close))
        reference_run(1)  # warm-up

    def reference_round() -> float:
        return _best_rate(opened[0][0], chosen.work, repeats, samples, sync) / subject.scale

    def close_reference() -> None:
        for _, close in opened:
            close()

    try:
        worker.submit(open_reference).result()
        for index in range(rounds):
            sides = ("probe", "reference") if index % 2 == 0 else ("reference", "probe")
            probe_value: float | None = None
            for side in sides:
                if side == "reference":
                    outcome.reference.append(worker.submit(reference_round).result())
                    outcome.reference_names.append(chosen.name)
                    continue
                started = time.perf_counter()
                probe_value, result = probe_once(run, subject)
                outcome.probe_seconds = time.perf_counter() - started
                outcome.probe_reason = result.reason
                outcome.probe_sizes.append(_size_in(result.reason))
                if probe_value is not None:
                    outcome.probe.append(probe_value)
                else:
                    outcome.note = f"probe {result.verdict.value}: {result.reason[:160]}"
            if probe_value is not None and outcome.reference[-1] > 0:
                outcome.round_ratios.append(probe_value / outcome.reference[-1])
    finally:
        worker.submit(close_reference).result()
    spec = BY_ID[subject.check_id]
    outcome.nominal, _ = run.profile.basis(spec)
    outcome.target = TARGETS["accelerator" if run.backend.accelerator else "cpu"].get(subject.family)
    return outcome


def _size_in(reason: str) -> str:
    """The GEMM size a probe reason names ("...; n=384 (of ...)"), with the kernel where it names
    one among several ("384 host-blas"), or ""."""
    if "n=" not in reason:
        return ""
    size = reason.split("n=")[1].split(" ")[0]
    return f"{size} {reason.split(', kernel ')[1].split(' ')[0]}" if ", kernel " in reason else size


def reference_worker(threads: int) -> ThreadPoolExecutor:
    """One thread for every reference measurement, pinned to the probe's thread count.

    The probe's checks run in worker threads, and glibc gives threads their own malloc arenas:
    in the main thread, large temporaries (the fp32 copies CPU fp8 GEMM makes) went back to
    the kernel on every call and cost ~20% in page faults. Like is compared with like.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference",
                              initializer=torch.set_num_threads, initargs=(threads,))


# -- the suites' wall time ------------------------------------------------------------------------------
def suite_wall_time(device: str, suite: str, threads: int) -> dict[str, Any]:
    """`accelqual probe --suite SUITE --json ...` as a subprocess, timed from start to exit."""
    script = Path(sys.executable).with_name("accelqual")
    command = [str(script), "probe"] if script.exists() else [sys.executable, "-m", "accelqual_probes"]
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        env = {**os.environ, ENV_CPU_THREADS: str(threads)}
        started = time.perf_counter()
        done = subprocess.run([*command, "--device", device, "--suite", suite, "--json", str(report_path)],
                              env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    checks = sorted(report.get("checks", []), key=lambda c: -float(c.get("durationSeconds") or 0))
    return {"suite": suite, "wall_seconds": round(seconds, 1), "exit_code": done.returncode,
            "verdict": report.get("verdict"), "report_seconds": report.get("durationSeconds"),
            "slowest": [[c["id"], c.get("durationSeconds")] for c in checks[:5]],
            "stderr_tail": done.stderr[-400:] if done.returncode not in (0, 1) else ""}


# -- the machine ------------------------------------------------------------------------------------------
def machine(run: PreparedRun, threads: int) -> dict[str, Any]:
    blas_info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    mkl = "MKL" if torch.backends.mkl.is_available() else "no MKL"  # type: ignore[no-untyped-call]
    return {
        "cpu": describe_cpu(),
        "cpu_mhz": _cpuinfo_field("cpu MHz"), "cores": os.cpu_count(), "l3_cache": _l3_cache(),
        "llc_mib": round((last_level_cache_bytes() or 0) / MIB, 1),
        "memory_gib": round(read_meminfo().get("MemTotal", 0) / (1 << 30), 1),
        "torch": torch.__version__, "torch_blas": mkl, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy": np.__version__, "numpy_blas": f"{blas_info.get('name')} {blas_info.get('version')}",
        "python": platform.python_version(), "kernel": platform.release(), "libc": " ".join(platform.libc_ver()),
        "threads": threads, "device": run.backend.kind, "device_name": run.inventory.model,
        "device_count": run.inventory.count, "runtime": run.inventory.runtime_version,
        "driver": run.inventory.driver_version, "profile": run.profile_name,
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }


def _cpuinfo_field(name: str) -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return next((line.partition(":")[2].strip() for line in text.splitlines() if line.startswith(name)), "")


def _l3_cache() -> str:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        return ""


# -- printing -----------------------------------------------------------------------------------------
def log(line: str) -> None:
    """Progress on stderr; results go to stdout."""
    print(line, file=sys.stderr, flush=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def print_outcome(o: Outcome) -> None:
    if o.ratio is None:
        print(f"{o.check_id:16} no comparison: {o.note}")
        return
    data = o.to_json()
    probe, ref = data["probe"], data["reference"]
    target = f">={o.target:.2f} {'ok' if o.met else 'MISSED'}" if o.target is not None else "-"
    print(f"{o.check_id:16} {_fmt(probe['best']):>9} {_fmt(ref['best']):>9} {o.unit:6} {o.ratio:6.3f} "
          f"{o.ratio_of_bests or 0.0:6.3f} {target:13} {_fmt(o.nominal):>8}  "
          f"probe med {_fmt(probe['median'])} spread {probe['spread']:.0%}; ref med {_fmt(ref['median'])} "
          f"spread {ref['spread']:.0%}; ref = {ref['best_candidate']}", flush=True)


def summary_line(outcomes: list[Outcome], info: dict[str, Any], rounds: int, suites: list[dict[str, Any]]) -> str:
    judged = [o for o in outcomes if o.met is not None]
    parts = [f"{o.check_id.removeprefix('perf.')}={o.ratio:.3f}{'' if o.met is not False else '!'}"
             for o in outcomes if o.ratio is not None]
    walls = " ".join(f"{s['suite']}={s['wall_seconds']}s" for s in suites)
    return (f"SUMMARY device={info['device']} threads={info['threads']} rounds={rounds} "
            f"targets_met={sum(1 for o in judged if o.met)}/{len(judged)} " + " ".join(parts)
            + (f" suites: {walls}" if walls else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="auto", help="device kind: auto (default), cpu, cuda, ...")
    parser.add_argument("--rounds", type=int, default=7, help="alternating probe/reference rounds (default 7)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"CPU threads of probe and reference (default: ${ENV_CPU_THREADS} or 1)")
    parser.add_argument("--checks", default="", help="comma-separated subset of the check ids")
    parser.add_argument("--suite", default="standard", choices=[s.value for s in Suite],
                        help="suite whose sizing the probe checks use (default standard)")
    parser.add_argument("--suites", default="quick,standard",
                        help="suites whose wall time to measure, comma-separated, or 'none' (default quick,standard)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke tests: small references
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    unknown_suites = {n.strip() for n in args.suites.split(",")} - {s.value for s in Suite} - {"", "none"}
    if unknown_suites:
        parser.error(f"unknown suite(s): {', '.join(sorted(unknown_suites))}")
    env_threads = os.environ.get(ENV_CPU_THREADS)
    threads = args.threads or (int(env_threads) if env_threads and env_threads.isdigit() and int(env_threads) > 0
                               else 1)
    # The probe's CPU backend reads the variable and pins torch and numpy's BLAS for the whole
    # process, so the references below run at the same thread count.
    os.environ[ENV_CPU_THREADS] = str(threads)
    try:
        run = prepare(ProbeRequest(device=args.device, suite=Suite(args.suite),
                                   checks=[f"perf.gemm.{d}" for d in GEMM_DTYPES] + ["perf.membw"]))
    except ProbeUsageError as exc:
        print(f"probe_fidelity: {exc}", file=sys.stderr)
        return 2
    finally:
        if env_threads is None:
            del os.environ[ENV_CPU_THREADS]
        else:
            os.environ[ENV_CPU_THREADS] = env_threads
    wanted = {c.strip() for c in args.checks.split(",") if c.strip()}
    try:
        info = machine(run, threads)
        chosen = [s for s in subjects(run, args.tiny) if not wanted or s.check_id in wanted]
        print(f"{info['device_count']} x {info['device_name']} | {info['cpu']}, {info['cores']} cores, "
              f"{info['memory_gib']} GiB | torch {info['torch']} ({info['cpu_capability']}) | "
              f"threads {threads} | profile {info['profile']} | load {info['load_average_start']}")
        print(f"{'check':16} {'probe':>9} {'reference':>9} {'unit':6} {'ratio':>6} {'bests':>6} {'target':13} "
              f"{'nominal':>8}")
        outcomes = []
        with reference_worker(threads) as worker:
            for subject in chosen:
                log(f"{subject.check_id}: probe and {len(subject.candidates)} reference candidates ...")
                outcome = measure(run, subject, args.rounds, log, worker)
                if outcome is not None:
                    outcomes.append(outcome)
                    print_outcome(outcome)
    finally:
        run.close()
    info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    names = [n.strip() for n in args.suites.split(",") if n.strip() and n.strip() != "none"]
    suites = [suite_wall_time(run.backend.kind, name, threads) for name in names]
    for s in suites:
        print(f"suite {s['suite']:9} {s['wall_seconds']:7.1f} s wall (report {s['report_seconds']} s, verdict "
              f"{s['verdict']}, exit {s['exit_code']}); slowest: "
              + ", ".join(f"{i} {d}s" for i, d in s["slowest"]))
    line = summary_line(outcomes, info, args.rounds, suites)
    if args.json is not None:
        statistic = "per round each side's best timed sample; ratio: median over rounds of probe / reference"
        args.json.write_text(json.dumps({"machine": info, "rounds": args.rounds, "statistic": statistic,
                                         "probe_suite_sizing": args.suite,
                                         "checks": [o.to_json() for o in outcomes], "suites": suites,
                                         "summary": line}, indent=2) + "\n")
    print(line)
    return 0 if all(o.met is not False for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
