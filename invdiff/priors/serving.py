"""Which images a prior serves: image size and pixel size.

A convolutional prior (:class:`~invdiff.priors.unet.UNetPrior`) is trained at a pixel size, not at an
image size: it runs on any image whose sides its network can halve, and what must match the data is
the size of a pixel in millimetres, within the zoom range it was trained over. :func:`fit_prior`
applies a prior to a problem's unknowns: it re-sizes a convolutional prior, refuses a prior of fixed
size that does not fit, and refuses a prior whose declared pixel sizes exclude the data's.
"""

from __future__ import annotations

__all__ = ["PIXEL_TOLERANCE", "fit_prior", "pixel_in_range", "serves_pixel"]

#: relative slack on a prior's declared pixel range (bilinear zoom augmentation blurs its edges)
PIXEL_TOLERANCE = 0.05


def pixel_in_range(pixel_range: tuple[float, float], pixel_mm: float) -> bool:
    """Whether ``pixel_mm`` lies in ``(smallest, largest)`` with :data:`PIXEL_TOLERANCE` slack."""
    lo, hi = pixel_range
    return lo / (1 + PIXEL_TOLERANCE) <= pixel_mm <= hi * (1 + PIXEL_TOLERANCE)


def serves_pixel(prior, pixel_mm: float) -> bool | None:
    """Whether ``prior`` declares ``pixel_mm`` among the pixel sizes it serves; ``None`` when it declares none."""
    declared = getattr(prior, "pixel_size_mm", None)
    return None if declared is None else pixel_in_range(declared, pixel_mm)


def fit_prior(prior, image_shape: tuple[int, int] | None, pixel_mm: float | None = None, *, name: str = "the prior",
              data: str = "the input", strict: bool = True):
    """``prior`` ready for ``image_shape`` unknowns with ``pixel_mm`` pixels, and the warnings to record.

    Returns ``(prior, warnings)``: the same prior, or a convolutional prior re-sized by its ``at_size``.
    ``strict=False`` turns a pixel size outside the declared range into a warning (an ablation that
    applies a prior off its resolution on purpose).

    Raises:
        ValueError: a fixed-size prior of another size; a side the network cannot halve; a declared pixel
            range that excludes ``pixel_mm`` (both named, with what to pass instead).
    """
    warnings: list[str] = []
    if prior is None or image_shape is None:
        return prior, warnings
    serves = tuple(int(s) for s in prior.event_shape[-2:])
    shape = tuple(int(s) for s in image_shape)
    if serves != shape:
        if not hasattr(prior, "at_size"):
            raise ValueError(f"prior {name!r} serves {serves[0]} x {serves[1]} images only; {data}'s unknown is "
                             f"{shape[0]} x {shape[1]}; pass a prior trained at that size (--prior PATH)")
        prior = prior.at_size(*shape)
    if pixel_mm is None:
        return prior, warnings
    fits = serves_pixel(prior, pixel_mm)
    if fits is False:
        lo, hi = prior.pixel_size_mm
        message = (f"prior {name!r} was trained for {lo:.3g}-{hi:.3g} mm pixels; {data}'s are {pixel_mm:.3g} mm "
                   f"(anatomy would look {'larger' if pixel_mm < lo else 'smaller'} to it than anything it learnt)")
        if not strict:
            warnings.append(message + "; applied anyway (strict=False)")
            return prior, warnings
        raise ValueError(message + "; pass a prior trained at this resolution (--prior NAME or PATH), or train one "
                         "with `invdiff train-prior --pixel-size`")
    if fits is None and serves != shape:
        warnings.append(f"prior {name!r} declares no pixel size; it was trained on {serves[0]} x {serves[1]} images "
                        f"and is applied to {shape[0]} x {shape[1]} images of {pixel_mm:.3g} mm pixels unchecked")
    return prior, warnings
