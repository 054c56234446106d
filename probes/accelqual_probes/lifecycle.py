"""The fixed lifecycle of one check: setup -> run -> evaluate, under a deadline.

Setup builds the typed params and decides applicability (a check whose subject does
not exist on the device is skipped with the reason); run executes the check in a
worker thread inside the device's `session`; evaluate turns its evidence into a
`CheckResult` (`evidence.conclude`). A crash is an `error` with the exception named;
a check that overruns its timeout is abandoned as an `error` (its thread is told to
stop and left behind; `abandoned_threads()` lets the CLI end the process promptly
even if that thread never returns). Neither ever counts as a pass.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field

from pydantic import ValidationError

from accelqual_probes.devices.base import is_out_of_memory
from accelqual_probes.evidence import CheckCancelledError, Evidence, NotApplicableError, clip, conclude
from accelqual_probes.registry import CheckContext, CheckDef, Sizing
from accelqual_probes.schema import CheckResult, Verdict

_abandoned: list[threading.Thread] = []
_abandoned_lock = threading.Lock()


def abandoned_threads() -> list[threading.Thread]:
    """Worker threads of timed-out checks that are still running."""
    with _abandoned_lock:
        _abandoned[:] = [t for t in _abandoned if t.is_alive()]
        return list(_abandoned)


@dataclass
class _Outcome:
    evidence: Evidence | None = None
    skip_reason: str | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def applicability(definition: CheckDef, ctx: CheckContext) -> str | None:
    """Why a check cannot run on this device, or None when it can."""
    spec = definition.catalog_spec()
    if spec.accelerator_only and not ctx.device.accelerator:
        return f"needs an accelerator; this run is on {ctx.device.kind}"
    if definition.needs_device and not ctx.devices:
        return f"no {ctx.device.kind} device is visible (see gen.inventory)"
    return None


def _execute(definition: CheckDef, ctx: CheckContext, sizing: Sizing, outcome: _Outcome) -> None:
    try:
        try:
            params = definition.params.for_run(sizing)
        except ValidationError as exc:
            outcome.error = f"invalid parameters: {str(exc).splitlines()[0]}"
            return
        reason = applicability(definition, ctx)
        if reason is not None:
            outcome.skip_reason = reason
            return
        with ctx.device.session(ctx.check_id):
            outcome.evidence = definition.run(ctx, params)
    except NotApplicableError as exc:
        outcome.skip_reason = str(exc) or "not applicable on this device"
    except CheckCancelledError:
        outcome.error = "cancelled after its timeout"
    except Exception as exc:
        outcome.error = describe_crash(exc)
    finally:
        outcome.done.set()


def describe_crash(exc: BaseException) -> str:
    """One line naming the exception and where in the check it came from."""
    first = str(exc).splitlines()[0][:300] if str(exc) else ""
    kind = "out of device memory" if is_out_of_memory(exc) else f"crashed: {type(exc).__name__}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{kind}{where}: {first}" if first else f"{kind}{where}"


def run_check(definition: CheckDef, ctx: CheckContext, sizing: Sizing, timeout_s: float) -> CheckResult:
    """Run one check through its lifecycle; always returns a result, never raises."""
    outcome = _Outcome()
    started = time.perf_counter()
    worker = threading.Thread(target=_execute, args=(definition, ctx, sizing, outcome),
                              name=f"check:{definition.id}", daemon=True)
    worker.start()
    finished = outcome.done.wait(timeout_s)
    duration = time.perf_counter() - started
    if not finished:
        ctx.cancelled.set()
        with _abandoned_lock:
            _abandoned.append(worker)
        return CheckResult(id=definition.id, category=definition.category, verdict=Verdict.ERROR,
                           reason=f"timed out: no result within {timeout_s:.4g} s; the check was abandoned",
                           duration_seconds=round(duration, 3))
    worker.join()
    if outcome.skip_reason is not None:
        return CheckResult(id=definition.id, category=definition.category, verdict=Verdict.SKIP,
                           reason=clip(outcome.skip_reason), duration_seconds=round(duration, 3))
    if outcome.error is not None or outcome.evidence is None:
        return CheckResult(id=definition.id, category=definition.category, verdict=Verdict.ERROR,
                           reason=clip(outcome.error or "check returned no evidence"),
                           duration_seconds=round(duration, 3))
    verdict, reason = conclude(outcome.evidence)
    return CheckResult(
        id=definition.id, category=definition.category, verdict=verdict, reason=reason,
        measurements=outcome.evidence.measurements, thresholds=outcome.evidence.thresholds[:64],
        duration_seconds=round(duration, 3),
    )
