"""Choosing a method's setting on validation data: a geometric grid, extended while the best value sits at an edge."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def tune_on_grid(score: Callable[[float], float], grid: Sequence[float], extensions: int) -> tuple[float, dict]:
    """The grid value with the highest ``score``, and every score tried.

    ``grid`` is increasing and geometric; while the best value is its smallest or largest, one more
    value is tried beyond it at the grid's ratio (at most ``extensions`` times). Integer grids stay
    integers; other new values are rounded to 3 significant digits.
    """
    scores = {v: score(v) for v in grid}
    ratio = grid[1] / grid[0]
    for _ in range(extensions):
        best, values = max(scores, key=scores.get), sorted(scores)
        if best not in (values[0], values[-1]):
            break
        step = best * ratio if best == values[-1] else best / ratio
        new = round(step) if isinstance(best, int) else float(f"{step:.3g}")
        scores[new] = score(new)
    return max(scores, key=scores.get), scores
