"""Fault plans (parsing at the boundary) and the fault layer's effect on each device primitive."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelqual_probes.devices import BackendSpec, reopen, with_faults
from accelqual_probes.devices.base import DeviceOutOfMemoryError
from accelqual_probes.devices.cpu import CpuBackend
from accelqual_probes.devices.faulty import BAD_DTYPE_ERROR, ComputeFaultMode, FaultyBackend
from accelqual_probes.faults import FaultPlan, FaultSpecError


def test_plan_parses_every_fault_and_spells_it_back() -> None:
    values = ["slow-compute=0.5", "slow-memory=0.25", "corrupt=0.001", "missing-device", "memory-shortfall=0.5",
              "bad-dtype=fp16", "residual-memory", "hang=perf.launch"]
    plan = FaultPlan.parse(values)
    assert plan.slow_compute == 0.5 and plan.slow_memory == 0.25 and plan.corrupt == 0.001
    assert plan.missing_device and plan.residual_memory and plan.memory_shortfall == 0.5
    assert plan.bad_dtype == "fp16" and plan.hang == frozenset({"perf.launch"})
    assert plan.labels() == values
    assert FaultPlan.parse(plan.labels()) == plan


def test_environment_faults_are_added_to_the_command_line_ones() -> None:
    plan = FaultPlan.from_sources(["missing-device"], {"ACCELQUAL_INJECT": "slow-compute=0.5, corrupt=0.01"})
    assert plan.labels() == ["slow-compute=0.5", "corrupt=0.01", "missing-device"]
    assert FaultPlan.from_sources([], {}).empty


@pytest.mark.parametrize(("value", "message"), [
    ("slow-compute=2", "must be in (0, 1)"),
    ("slow-compute=0", "must be in (0, 1)"),
    ("slow-memory=fast", "is not a number"),
    ("corrupt=nan", "not a finite number"),
    ("corrupt=1.5", "rate must be in (0, 1]"),
    ("memory-shortfall", "needs a value"),
    ("missing-device=1", "takes no value"),
    ("bad-dtype=fp12", "is not one of"),
    ("hang=no.such.check", "unknown check id"),
    ("overheat=1", "unknown fault"),
])
def test_bad_fault_values_are_rejected_with_a_precise_message(value: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FaultPlan.parse([value])


def faulty(**plan: object) -> FaultyBackend:
    backend = with_faults(CpuBackend(), FaultPlan(**plan))  # type: ignore[arg-type]
    assert isinstance(backend, FaultyBackend)
    return backend


def test_empty_plan_leaves_the_backend_unwrapped() -> None:
    backend = CpuBackend()
    assert with_faults(backend, FaultPlan()) is backend


def test_slow_compute_repeats_the_real_op_one_over_f_times_on_average() -> None:
    mode = ComputeFaultMode(FaultPlan(slow_compute=0.4))
    calls: list[int] = []

    def op(*args: object, **kwargs: object) -> None:
        calls.append(1)

    for _ in range(10):
        mode._extra_work(op, (), {})
    # 10 ops at F=0.4 cost 25 op-executions: 10 originals (not counted here) + 15 extra runs.
    assert len(calls) == 15


def test_slow_compute_leaves_results_exact() -> None:
    backend = faulty(slow_compute=0.25)
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    assert torch.equal(backend.matmul(a, b), a @ b)


def test_corruption_flips_one_bit_in_results() -> None:
    backend = faulty(corrupt=1.0)
    a, b = torch.randn(32, 32), torch.randn(32, 32)
    got, want = backend.matmul(a, b), a @ b
    flipped = (got.view(torch.int32) ^ want.view(torch.int32)).view(-1).tolist()
    differing = [bits for bits in flipped if bits]
    assert len(differing) > 500  # nearly every element at rate 1 (a position may be drawn twice)
    assert all(bin(bits & 0xFFFFFFFF).count("1") == 1 for bits in differing)


def test_bad_dtype_skews_only_that_dtype() -> None:
    backend = faulty(bad_dtype="fp16")
    a, b = torch.randn(16, 16), torch.randn(16, 16)
    assert torch.equal(backend.matmul(a, b), a @ b)
    half = backend.matmul(a.half(), b.half()).float()
    exact = (a.half() @ b.half()).float()
    ratio = (half / exact).view(-1)[:4]
    assert torch.allclose(ratio, torch.tensor([1 - BAD_DTYPE_ERROR, 1 + BAD_DTYPE_ERROR] * 2), rtol=1e-2)


def test_compute_faults_stay_inside_the_compute_scope() -> None:
    backend = faulty(corrupt=1.0)
    a = torch.randn(8, 8)
    assert torch.equal(a @ a, a @ a), "outside the scope nothing is corrupted"
    with backend.compute(), backend.compute():  # nested scopes apply the faults once
        inside = a @ a
    assert not torch.equal(inside, a @ a)


class CountingCpu(CpuBackend):
    def __init__(self) -> None:
        super().__init__()
        self.copies = 0

    def copy_(self, dst: torch.Tensor, src: torch.Tensor, kernel: str | None = None) -> None:
        self.copies += 1
        super().copy_(dst, src, kernel)


def test_slow_memory_moves_one_over_f_times_the_bytes() -> None:
    inner = CountingCpu()
    backend = FaultyBackend(inner, FaultPlan(slow_memory=0.25))
    src, dst = torch.ones(16), torch.zeros(16)
    for _ in range(4):
        backend.copy_(dst, src)
    assert inner.copies == 16
    assert torch.equal(dst, src)


def test_missing_device_reports_one_device_fewer() -> None:
    backend = faulty(missing_device=True)
    assert backend.device_count() == 0 and backend.devices() == []
    assert backend.inventory().count == 0


def test_memory_shortfall_fails_allocations_beyond_f_of_the_limit_until_freed() -> None:
    backend = faulty(memory_shortfall=0.5)
    limit = backend.allocation_limit(0)
    chunk = limit // 8
    held = [backend.empty(chunk, torch.uint8, 0) for _ in range(4)]
    with pytest.raises(DeviceOutOfMemoryError):
        backend.empty(chunk, torch.uint8, 0)
    backend.free(held.pop())
    backend.empty(chunk // 2, torch.uint8, 0)


def test_residual_memory_hands_freed_bytes_to_the_next_process(tmp_path: Path) -> None:
    plan = FaultPlan(residual_memory=True, residual_pool=str(tmp_path))
    first = reopen(BackendSpec(kind="cpu", faults=plan))
    secret = first.empty(1024, torch.int64, 0)
    secret.fill_(0x5EC2E7)
    first.free(secret)
    first.close()  # the "process" ends and leaves its freed block behind
    assert list(tmp_path.glob("slot-*.bin"))
    second = reopen(BackendSpec(kind="cpu", faults=plan))
    fresh = second.empty(1024, torch.int64, 0)
    assert int((fresh == 0x5EC2E7).sum()) == 1024
    assert not list(tmp_path.glob("slot-*.bin")), "a slot is handed out once"


def test_owning_backend_removes_its_residual_pool() -> None:
    backend = faulty(residual_memory=True)
    pool = backend.plan.residual_pool
    assert pool is not None and Path(pool).is_dir()
    backend.close()
    assert not Path(pool).exists()


def test_hang_blocks_only_the_named_check() -> None:
    import threading

    backend = faulty(hang=frozenset({"perf.launch"}))
    with backend.session("perf.membw"):
        pass
    entered = threading.Event()

    def enter() -> None:
        with backend.session("perf.launch"):
            entered.set()

    thread = threading.Thread(target=enter, daemon=True)
    thread.start()
    assert not entered.wait(0.3)
    assert thread.is_alive(), "the hung check's thread stays blocked (the runner abandons it)"
