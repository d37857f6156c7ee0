"""fastMRI mask functions: worked examples and the properties the specification promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdiff.operators.masks import MaskFunc, center_columns, file_seed


def test_center_block_by_hand():
    # W=16, 4 low frequencies: pad = (16 - 4 + 1) // 2 = 6, so columns 6..9
    assert center_columns(16, 4).nonzero().flatten().tolist() == [6, 7, 8, 9]
    # odd count: W=15, 3 columns: pad = 6 -> 6..8
    assert center_columns(15, 3).nonzero().flatten().tolist() == [6, 7, 8]


def test_equispaced_worked_example():
    m = MaskFunc("equispaced", (0.25,), (4,))(16, seed=3)
    # fastMRI's draw order: the pair index (randint(0, 1)), then the offset in [0, 4)
    rng = np.random.RandomState(3)
    rng.randint(0, 1)
    offset = rng.randint(0, 4)
    expected = {6, 7, 8, 9} | set(range(offset, 16, 4))
    assert set(m.columns.nonzero().flatten().tolist()) == expected
    assert m.num_low_frequencies == 4 and m.acceleration == 4
    # fastMRI's explicit offset: the same mask with the offset given instead of drawn
    given = MaskFunc("equispaced", (0.25,), (4,))(16, seed=3, offset=offset)
    assert torch.equal(given.columns, m.columns)
    other = MaskFunc("equispaced", (0.25,), (4,))(16, seed=3, offset=(offset + 1) % 4)
    assert set(other.columns.nonzero().flatten().tolist()) == {6, 7, 8, 9} | set(range((offset + 1) % 4, 16, 4))


def test_masks_refuse_no_seed_and_a_bad_offset():
    f = MaskFunc("equispaced_fraction", (0.08,), (4,))
    with pytest.raises(ValueError, match="needs a seed"):
        f(368, None)
    with pytest.raises(ValueError, match=r"offset must be an integer in \[0, 5\)"):
        f(368, 0, offset=9)
    with pytest.raises(ValueError, match="offset applies to the equispaced masks"):
        MaskFunc("random", (0.08,), (4,))(368, 0, offset=1)


def test_random_mask_follows_the_specification_for_a_file():
    seed = file_seed("file1000001.h5")
    assert seed[:4] == (102, 105, 108, 101)  # "file"
    m = MaskFunc("random", (0.08, 0.04), (4, 8))(368, seed)
    rng = np.random.RandomState(seed)
    k = rng.randint(0, 2)
    cf, acc = (0.08, 0.04)[k], (4, 8)[k]
    n_low = round(368 * cf)
    expected = rng.uniform(size=368) < (368 / acc - n_low) / (368 - n_low)
    expected[(368 - n_low + 1) // 2 : (368 - n_low + 1) // 2 + n_low] = True
    assert torch.equal(m.columns.bool(), torch.from_numpy(expected))
    assert (m.center_fraction, m.acceleration) == (cf, acc)


def test_random_mask_reaches_the_acceleration_on_average():
    f = MaskFunc("random", (0.08,), (4,))
    counts = [float(f(368, seed).columns.sum()) for seed in range(300)]
    assert np.mean(counts) == pytest.approx(368 / 4, rel=0.01)


@pytest.mark.parametrize("num_cols, cf, acc", [(368, 0.08, 4), (368, 0.04, 8), (320, 0.08, 4), (640, 0.04, 8)])
def test_equispaced_fraction_samples_w_over_r_columns(num_cols, cf, acc):
    for seed in range(5):
        m = MaskFunc("equispaced_fraction", (cf,), (acc,))(num_cols, seed)
        assert abs(float(m.columns.sum()) - num_cols / acc) <= 2
        lo = (num_cols - m.num_low_frequencies + 1) // 2
        assert bool(m.columns[lo : lo + m.num_low_frequencies].all())


def test_same_seed_same_mask_and_no_shared_state():
    f = MaskFunc("random", (0.08, 0.04), (4, 8))
    a, b, c = f(368, 7), f(368, 8), f(368, 7)
    assert torch.equal(a.columns, c.columns) and not torch.equal(a.columns, b.columns)


def test_any_combination_draws_both_independently():
    f = MaskFunc("random", (0.08, 0.04), (4, 8), allow_any_combination=True)
    pairs = {(f(368, s).center_fraction, f(368, s).acceleration) for s in range(60)}
    assert pairs == {(0.08, 4), (0.08, 8), (0.04, 4), (0.04, 8)}


@pytest.mark.parametrize("kwargs, match", [
    (dict(mask_type="poisson", center_fractions=(0.08,), accelerations=(4,)), "mask_type"),
    (dict(mask_type="random", center_fractions=(0.08, 0.04), accelerations=(4,)), "as many"),
    (dict(mask_type="random", center_fractions=(1.5,), accelerations=(4,)), r"\(0, 1\)"),
    (dict(mask_type="equispaced", center_fractions=(0.08,), accelerations=(2.5,)), "integer"),
])
def test_bad_mask_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskFunc(**kwargs)
