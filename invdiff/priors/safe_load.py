"""Reading weights files that other projects publish, without running code from them.

Three readers, chosen by the file, never by trust:

* ``.safetensors``: a header and raw tensor bytes (:mod:`safetensors`); nothing to execute by design.
* anything else is a pickle (``torch.save``'s zip archive or a legacy pickle) and is read with
  ``torch.load(weights_only=True)``: torch's restricted unpickler, which builds only tensors, plain
  containers and numbers, and refuses every other global (``os.system``, a class from the author's
  package, EDM's ``persistence`` objects) before calling it.

Every refusal is a :class:`~invdiff.priors.checkpoint.CheckpointError` naming the file and what was
expected. :func:`find_state_dict` then takes the network's weights out of the containers the
families wrap them in (an EMA copy first).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from invdiff.priors.checkpoint import CheckpointError

__all__ = ["find_state_dict", "read_weights", "strip_prefix"]

#: containers around a state dict, in order of preference: EMA weights before the raw ones
#: (EDM-style training snapshots and InverseBench: "ema", "net"; Lightning and many others:
#: "state_dict"; score-SDE and DDS-style: "model")
STATE_DICT_KEYS = ("ema", "ema_model", "net", "state_dict", "model", "params")


def _first_line(err: BaseException) -> str:
    """The error's first sentence (torch's archive errors go on for a paragraph)."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return line.split(". ", 1)[0].rstrip(".")[:200]


def read_weights(path: str | os.PathLike) -> object:
    """The content of a weights file, read without executing anything from it.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a truncated or foreign file, or a pickle that needs code to rebuild (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package "
                                  "(pip install 'invdiff[diffusers]')") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # truncated header, bad JSON, sizes that do not add up
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(err)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's restricted unpickler refused something
        lines = [line.strip() for line in str(err).splitlines()]
        why = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
        text = why[0][:200] if why else "refused by the restricted unpickler"
        hint = (" EDM-style network-snapshot .pkl files pickle the network's Python code; export their "
                "weights first (torch.save(net.state_dict(), 'weights.pt') in the authors' environment)"
                if path.suffix == ".pkl" else "")
        raise CheckpointError(f"{path}: refused: the pickle asks to build objects other than tensors and plain "
                              f"containers, which could run code (read with torch.load(weights_only=True): "
                              f"{text}).{hint}") from None
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable weights file (truncated, or not a torch/safetensors file: "
                              f"{_first_line(err)})") from None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def find_state_dict(content: object, path: str | os.PathLike) -> dict[str, Tensor]:
    """The network weights in ``content`` (a read weights file): the file itself when it is a state dict,
    else the first of :data:`STATE_DICT_KEYS` that holds one (searched one level deep).

    Raises:
        CheckpointError: no state dict found (the keys present are named).
    """
    if _is_state_dict(content):
        return dict(content)
    if isinstance(content, Mapping):
        for key in STATE_DICT_KEYS:
            inner = content.get(key)
            if _is_state_dict(inner):
                return dict(inner)
        for key in STATE_DICT_KEYS:  # one more level, e.g. {"state_dict": {"ema": ...}}
            inner = content.get(key)
            if isinstance(inner, Mapping):
                for key2 in STATE_DICT_KEYS:
                    if _is_state_dict(inner.get(key2)):
                        return dict(inner[key2])
        found = sorted(str(k) for k in content)[:12]
        raise CheckpointError(f"{path}: no network weights found: expected a state dict (names -> tensors) at the "
                              f"top level or under one of {list(STATE_DICT_KEYS)}; the file holds keys {found}")
    raise CheckpointError(f"{path}: expected a state dict or a dict holding one, found {type(content).__name__}")


def strip_prefix(state: Mapping[str, Tensor], prefixes: tuple[str, ...] = ("module.", "model.")) -> dict[str, Tensor]:
    """``state`` with a prefix that every key shares removed, repeatedly (``module.`` from
    DistributedDataParallel, ``model.`` from EDM's preconditioning wrappers)."""
    state = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state
