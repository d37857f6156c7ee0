"""What every invdiff operator shares: immutable parameters, per-sample batching, input checks.

An operator's parameters (masks, coil maps, kernels, angles) are fixed at construction. deepinv lets
``A(x, mask=m)`` overwrite the stored mask; invdiff operators refuse such keyword arguments, and a
different parameter is a different operator (``with_mask``, :meth:`ParametrizedOperator.replace`).

Per-sample parameters have a leading batch dimension of 1 (shared) or ``B`` (one per sample).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def reject_parameter_kwargs(op: object, kwargs: dict) -> None:
    """Raise if a caller tries to pass (and, in deepinv, store) new parameters through ``A``."""
    if kwargs:
        raise TypeError(
            f"{type(op).__name__} is immutable: parameters {sorted(kwargs)} cannot be passed to A/A_adjoint; "
            "build a new operator (with_mask, replace) instead"
        )


def check_shape(x: Tensor, tail: Sequence[int], what: str, layout: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, *tail)``, naming the expected and the given shape."""
    tail = tuple(int(t) for t in tail)
    if not isinstance(x, Tensor) or x.dim() != len(tail) + 1 or tuple(x.shape[1:]) != tail:
        given = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what} must have shape (B, {', '.join(map(str, tail))}) {layout}, got {given}")


def check_image(t: Tensor, spatial: Sequence[int], what: str, layout: str = "(B, C, H, W)") -> None:
    """``t`` must be ``(B, C, *spatial)`` for any ``C``."""
    check_shape(t, (t.shape[1] if isinstance(t, Tensor) and t.dim() == 2 + len(spatial) else 1, *spatial),
                what, layout)


def as_weights(mask) -> Tensor:
    """A mask as a real floating tensor (bool becomes the default float dtype); finite, ``>= 0``."""
    mask = torch.as_tensor(mask)
    if mask.is_complex() or not (mask.is_floating_point() or mask.dtype == torch.bool):
        raise ValueError(f"mask must be real (float or bool), got {mask.dtype}")
    if mask.dtype == torch.bool:
        return mask.to(torch.get_default_dtype())
    if not bool(torch.isfinite(mask).all()) or bool((mask < 0).any()):
        raise ValueError("mask entries must be finite and >= 0")
    return mask


def divide_where_positive(y: Tensor, weights: Tensor) -> Tensor:
    """``y / w`` where ``w > 0`` and 0 elsewhere: the pseudo-inverse of a non-negative diagonal."""
    positive = weights > 0
    return torch.where(positive, y / torch.where(positive, weights, torch.ones_like(weights)), torch.zeros_like(y))


def check_batch(param: Tensor, batch: int, name: str, op: object) -> None:
    """A parameter's leading dimension must be 1 (shared) or the batch size of the input."""
    if param.shape[0] not in (1, batch):
        raise ValueError(
            f"{type(op).__name__} holds {param.shape[0]} {name}s (one per sample) but the input has batch size "
            f"{batch}; use expand_batch(n) for n particles per sample"
        )


def real_dtype_of(x: Tensor) -> torch.dtype:
    return x.real.dtype if x.is_complex() else x.dtype


def complex_dtype_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.float32: torch.complex64, torch.float64: torch.complex128,
            torch.float16: torch.complex32}.get(dtype, dtype)


class ParametrizedOperator:
    """Mixin for operators rebuilt from named tensor parameters.

    Subclasses list their tensor parameters in ``_parameter_names`` and implement ``_init_kwargs()``,
    the keyword arguments that rebuild an equal operator. Per-sample parameters are those whose
    leading dimension exceeds 1.
    """

    _parameter_names: tuple[str, ...] = ()

    def _init_kwargs(self) -> dict:
        raise NotImplementedError

    def replace(self, **changes) -> ParametrizedOperator:
        """A new operator with some constructor arguments changed; this one is left as it is."""
        kwargs = self._init_kwargs()
        unknown = set(changes) - set(kwargs)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no parameters {sorted(unknown)}; it has {sorted(kwargs)}")
        kwargs.update(changes)
        return type(self)(**kwargs)

    def expand_batch(self, n: int) -> ParametrizedOperator:
        """The operator for ``n`` particles per sample: per-sample parameters repeated item-major."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        kwargs = self._init_kwargs()
        for name in self._parameter_names:
            value = kwargs.get(name)
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] > 1:
                kwargs[name] = value.repeat_interleave(n, dim=0)
        return type(self)(**kwargs)
