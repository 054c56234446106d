"""Choosing the card profile of a run: `--profile NAME|auto|PATH` or `ACCELQUAL_PROFILE_JSON`.

Precedence: `--profile PATH` wins; then the JSON the operator puts into the probe
pod's environment (`{"name": ..., "spec": {...}}`, how a custom CardProfile reaches a
pod) unless `--profile` names another profile; then a built-in `--profile NAME`;
otherwise `auto`: the built-in profile whose match strings fit the device name,
`cpu-reference` on a CPU, and a clear error for an accelerator no profile describes
(fail closed: never judge a card by a guess).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from accelqual_probes import profiles
from accelqual_probes.profiles import CardProfileSpec, NamedProfile, ProfileError

ENV_PROFILE_JSON = "ACCELQUAL_PROFILE_JSON"
AUTO = "auto"


def looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith((".yaml", ".yml", ".json")) or Path(value).is_file()


def parse_profile_json(raw: str, source: str = ENV_PROFILE_JSON) -> NamedProfile:
    """A `{"name": ..., "spec": {...}}` document; `ProfileError` naming the first problem."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProfileError(f"{source} is not valid JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{source} is not a JSON object")
    try:
        return NamedProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ProfileError(f"{source} is invalid at {where}: {first['msg']}") from None


def load_profile_argument(argument: str | None, env_json: str | None) -> NamedProfile | None:
    """The profile named or pointed to before any device is opened; None means `auto`.

    The operator passes a custom CardProfile as `--profile NAME` plus its JSON in the
    environment under the same name (a custom profile may also override a built-in one
    of that name), so the JSON wins when `--profile` is absent, `auto` or its name.
    """
    if argument and argument != AUTO and looks_like_path(argument):
        return profiles.load_file(Path(argument))
    from_env = parse_profile_json(env_json) if env_json and env_json.strip() else None
    if from_env is not None and (not argument or argument in (AUTO, from_env.name)):
        return from_env
    if argument and argument != AUTO:
        return NamedProfile(name=argument, spec=profiles.builtin(argument))
    return None


def resolve_profile(chosen: NamedProfile | None, device_kind: str, device_name: str) -> tuple[str, CardProfileSpec]:
    """The profile for this device: the chosen one (checked against the device kind) or auto."""
    if chosen is None:
        candidates = {n: s for n, s in profiles.BUILTIN.items() if s.device_type == device_kind}
        name = profiles.auto_select(device_name, candidates)
        if name is None and device_kind == "cpu":
            name = profiles.DEFAULT_PROFILE
        if name is None:
            raise ProfileError(f"no built-in profile matches {device_kind} device {device_name!r}; "
                               f"pass --profile NAME|PATH (built-in: {', '.join(sorted(profiles.BUILTIN))})")
        chosen = NamedProfile(name=name, spec=profiles.BUILTIN[name])
    if chosen.spec.device_type != device_kind:
        raise ProfileError(f"profile {chosen.name} is for {chosen.spec.device_type} devices, "
                           f"but this run is on {device_kind}")
    return chosen.name, chosen.spec
