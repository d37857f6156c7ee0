"""Per-item random streams, and the private stream for code that draws from torch's global generators."""

from __future__ import annotations

import pytest
import torch

from invdiff.rng import BatchGenerator, private_global_stream


def test_streams_do_not_depend_on_the_batch_size():
    one = BatchGenerator.spawn(torch.Generator().manual_seed(3), 1).randn(5)
    eight = BatchGenerator.spawn(torch.Generator().manual_seed(3), 8).randn(5)
    assert torch.equal(one[0], eight[0]) and not torch.equal(eight[0], eight[1])


def test_a_generator_is_required():
    with pytest.raises(TypeError, match="torch.Generator"):
        BatchGenerator.spawn(None, 2)


def test_private_global_stream_is_seeded_and_restores_the_callers_state():
    torch.randn(3)  # any caller state
    before = torch.get_rng_state()
    with private_global_stream(11):
        a = torch.randn(4)
    assert torch.equal(torch.get_rng_state(), before)
    with private_global_stream(11):
        b = torch.randn(4)
    assert torch.equal(a, b)


def test_private_global_stream_on_the_cpu_never_seeds_a_cuda_generator(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a CUDA generator was seeded")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", refuse)
    monkeypatch.setattr(torch.cuda, "manual_seed", refuse)
    with private_global_stream(5, "cpu"):
        torch.randn(2)
