"""Per-sample random streams.

Every random draw in invdiff takes an explicit :class:`torch.Generator`; nothing seeds or reads the
caller's global generators. Code outside invdiff that draws only from torch's global generators
(deepinv's solvers, PyTorch's layer initialisers) runs inside :func:`private_global_stream`, which
seeds them for the duration and restores the caller's state afterwards. Samplers need more than that: item ``i`` of a batch must get the same random numbers whether
it is run alone or beside seven others. A single generator cannot give that (a batch of 8 consumes
the stream 8 times faster), so :class:`BatchGenerator` derives one independent stream per item
from one draw of the user's generator.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """One round of SplitMix64 (Steele, Lea & Flood 2014): a bijective 64-bit mixer."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class BatchGenerator:
    """One independent, reproducible random stream per batch item.

    Draws return tensors of shape ``(B, *shape)``; row ``i`` comes from stream ``i`` alone, so it
    does not depend on the batch size or on the other rows.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        if len(generators) == 0:
            raise ValueError("BatchGenerator needs at least one generator")
        self._generators = list(generators)

    @classmethod
    def spawn(
        cls, generator: torch.Generator, batch_size: int, device: torch.device | str = "cpu"
    ) -> BatchGenerator:
        """Derive ``batch_size`` streams from one draw of ``generator``.

        Stream ``i`` is seeded with a SplitMix64 hash of (base seed, i): it is the same for every
        batch size, and the streams are statistically independent of each other.
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator, got {type(generator).__name__}; "
                "invdiff never draws from the global RNG"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        base = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        device = torch.device(device)
        gens = []
        for i in range(batch_size):
            seed = _splitmix64(_splitmix64(base) ^ _splitmix64(i)) & ((1 << 63) - 1)
            gens.append(torch.Generator(device=device).manual_seed(seed))
        return cls(gens)

    @property
    def batch_size(self) -> int:
        return len(self._generators)

    @property
    def device(self) -> torch.device:
        return self._generators[0].device

    def get_state(self) -> list[torch.Tensor]:
        """Every stream's state (byte tensors), for a checkpoint."""
        return [g.get_state() for g in self._generators]

    def set_state(self, states: list[torch.Tensor]) -> None:
        """Restore the streams from :meth:`get_state`'s states (as many as there are streams)."""
        if len(states) != len(self._generators):
            raise ValueError(f"{len(states)} stream states for a BatchGenerator of {len(self._generators)} streams")
        for g, state in zip(self._generators, states):
            g.set_state(state)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal draws, shape ``(B, *shape)``."""
        return torch.stack(
            [torch.randn(shape, generator=g, dtype=dtype, device=g.device) for g in self._generators]
        )

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform draws on [0, 1), shape ``(B, *shape)``."""
        return torch.stack(
            [torch.rand(shape, generator=g, dtype=dtype, device=g.device) for g in self._generators]
        )

    def randn_like(self, like: torch.Tensor, n: int) -> torch.Tensor:
        """Standard normal draws shaped like ``like`` ``(B * n, ...)``, item-major: rows ``i*n .. i*n+n-1``
        come from stream ``i``. Complex ``like``: independent real and imaginary parts, each N(0, 1)."""
        shape = like.shape[1:]
        if like.is_complex():
            re = self.randn(n, *shape, dtype=like.real.dtype)
            im = self.randn(n, *shape, dtype=like.real.dtype)
            return torch.complex(re, im).reshape(like.shape)
        return self.randn(n, *shape, dtype=like.dtype).reshape(like.shape)


@contextmanager
def private_global_stream(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block that draws from torch's *global* generators with a stream seeded by ``seed``.

    The CPU generator, and ``device``'s when it is a CUDA device, are seeded inside
    :func:`torch.random.fork_rng` for that device only, so the caller's generators (CPU and every
    CUDA device) hold exactly the state they had before the block, whatever it draws.
    """
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
