"""A sampler's state saved between steps and restored, so that a long run resumes where it stopped.

A state (:class:`~invdiff.samplers.base.SamplerState` and its extensions) is tensors, numbers and four
objects: the measurement and the prior, which are rebuilt from the input and are not saved; the random
streams, saved as their generators' states; and the cost counters. A state class may name more fields
that its sampler's ``init`` rebuilds and no step changes (``rebuilt_fields``, e.g. a wavelet transform). :func:`state_snapshot` refuses a
field of any other type rather than silently dropping it, so a resumed run continues exactly the run
that stopped (bit for bit on the same machine and thread count).

:class:`StepCheckpoint` does it for a run: ``restore`` (the ``resume`` hook of
:func:`~invdiff.samplers.base.run`) starts from the saved state when there is one, and the instance itself
(the ``callback``) saves the state atomically at most every ``seconds``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invdiff.io import atomic_write
from invdiff.samplers.base import SamplerState

__all__ = ["StepCheckpoint", "restore_state", "state_snapshot"]

_REBUILT = ("measurement", "prior")
_PLAIN = (Tensor, int, float, bool, str, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def _measurement_digest(state: SamplerState) -> str | None:
    """A hash of the state's data ``y``: a measurement changed during the run (an acquisition policy's
    new mask, :mod:`invdiff.active`) is not rebuilt by ``init``, so a checkpoint taken after it must not
    resume a run that starts from the original."""
    m = getattr(state, "measurement", None)
    if m is None:
        return None
    y = m.y.detach().cpu().contiguous()
    return hashlib.sha256(y.numpy().tobytes() + str((tuple(y.shape), str(y.dtype))).encode()).hexdigest()


def state_snapshot(state: SamplerState) -> dict[str, Any]:
    """The state's fields that a rebuilt initial state lacks, as plain data for ``torch.save``
    (``weights_only`` loading): tensors, numbers, the streams' states and the cost counters, and a hash of
    the measurement's data that :func:`restore_state` checks."""
    fields: dict[str, Any] = {}
    rebuilt = _REBUILT + tuple(getattr(type(state), "rebuilt_fields", ()))
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if f.name in rebuilt:
            continue
        if f.name == "rng":
            fields[f.name] = value.get_state()
        elif f.name == "diagnostics":
            fields[f.name] = dataclasses.asdict(value)
        elif _plain(value):
            fields[f.name] = value.detach().cpu().clone() if isinstance(value, Tensor) else value
        else:
            raise TypeError(f"{type(state).__name__}.{f.name} holds a {type(value).__name__}, which a checkpoint "
                            "cannot save; keep sampler state in tensors and numbers")
    return {"state": type(state).__name__, "fields": fields, "measurement": _measurement_digest(state)}


def restore_state(initial: SamplerState, snapshot: dict[str, Any]) -> SamplerState:
    """``initial`` (a fresh ``init`` of the same sampler, measurement and prior) with the snapshot's fields.
    The streams and the cost counters are restored in place: the prior counts into the same object."""
    if snapshot.get("state") != type(initial).__name__:
        raise ValueError(f"the checkpoint holds a {snapshot.get('state')}, this sampler's state is a "
                         f"{type(initial).__name__}")
    if snapshot.get("measurement") != _measurement_digest(initial):
        raise ValueError("the checkpoint was taken with other measured data than this run starts from (a run "
                         "whose measurement changes as it goes, like an acquisition policy's, cannot resume)")
    fields = dict(snapshot["fields"])
    initial.rng.set_state(fields.pop("rng"))
    for key, value in fields.pop("diagnostics").items():
        setattr(initial.diagnostics, key, value)
    device = initial.rng.device
    moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in fields.items()}
    for key, value in moved.items():
        old = getattr(initial, key)
        if isinstance(old, Tensor) and (not isinstance(value, Tensor) or old.shape != value.shape):
            raise ValueError(f"the checkpoint's {key} has shape {tuple(getattr(value, 'shape', ()))}, the run's "
                             f"{tuple(old.shape)}: it belongs to another problem")
    return dataclasses.replace(initial, **moved)


class StepCheckpoint:
    """Save a run's state to ``path`` at most every ``seconds`` (never after the last step), and restore it.

    ``elapsed_before``: wall seconds the stopped run had spent, read by :meth:`restore` (0 otherwise).
    """

    def __init__(self, path: str | Path, seconds: float = 60.0):
        self.path, self.seconds = Path(path), float(seconds)
        self.elapsed_before = 0.0
        self.resumed_step: int | None = None
        self._start = self._last = time.perf_counter()

    def restore(self, state: SamplerState) -> SamplerState:
        self._start = self._last = time.perf_counter()
        if not self.path.exists():
            return state
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated file cannot happen (atomic writes), another format can
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise ValueError(f"{self.path}: cannot read this checkpoint ({first}); rerun with --force") from None
        self.elapsed_before = float(saved["elapsed_s"])
        restored = restore_state(state, saved["snapshot"])
        self.resumed_step = restored.step
        return restored

    def __call__(self, state: SamplerState) -> None:
        now = time.perf_counter()
        if state.done or now - self._last < self.seconds:
            return
        snapshot = {"snapshot": state_snapshot(state), "elapsed_s": self.elapsed_before + now - self._start}
        atomic_write(self.path, lambda tmp: torch.save(snapshot, tmp))
        self._last = now

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
