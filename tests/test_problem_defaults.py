"""The tuned-defaults registry (invdiff/problems/defaults.toml): its per-budget entries and their errors."""

from __future__ import annotations

import pytest

from invdiff.problems.defaults import DEFAULTS_FILE, configured_sampler, default_entry, load_defaults, sampler_settings

ENTRY = """
[red-diff.mri]
settings = { lam = 512.0, lr = 0.1 }
grid = { lr = [0.01, 0.1] }
nfe = 100
"""


def _defaults(tmp_path, text):
    path = tmp_path / "defaults.toml"
    path.write_text(text)
    return load_defaults(path)


def test_a_run_takes_the_setting_chosen_at_the_budget_nearest_by_ratio(tmp_path):
    text = ENTRY + """
[[red-diff.mri.budget]]
nfe = 25
settings = { lr = 0.03 }
validation = "at 25"

[[red-diff.mri.budget]]
nfe = 400
settings = { lr = 0.3 }
grid = { lr = [0.3, 1.0] }
"""
    entry = _defaults(tmp_path, text)[("red-diff", "mri")]
    assert [b.nfe for b in entry.budgets] == [25, 400]
    # 25 | 50 (the geometric midpoint: a tie goes to the larger budget) | 100 | 200 (tie) | 400
    chosen = {n: entry.at(n).nfe for n in (1, 25, 49, 50, 51, 100, 199, 200, 1000)}
    assert chosen == {1: 25, 25: 25, 49: 25, 50: 100, 51: 100, 100: 100, 199: 100, 200: 400, 1000: 400}
    assert entry.at(25).settings == {"lam": 512.0, "lr": 0.03}  # the budget's setting on top of the entry's
    assert entry.at(25).grid == {"lr": [0.01, 0.1]} and entry.at(400).grid == {"lr": [0.3, 1.0]}
    assert entry.at(25).validation == "at 25" and entry.at(None) is entry and entry.at(0) is entry


def test_an_entry_without_a_recorded_budget_defers_to_its_budget_tables(tmp_path):
    text = ENTRY.replace("nfe = 100\n", "") + "[[red-diff.mri.budget]]\nnfe = 30\nsettings = { lr = 0.03 }\n"
    entry = _defaults(tmp_path, text)[("red-diff", "mri")]
    assert entry.at(1000).nfe == 30 and entry.at(None).settings["lr"] == 0.1


@pytest.mark.parametrize("extra, message", [
    ("[[red-diff.mri.budget]]\nsettings = { lr = 0.03 }\n", r"\[red-diff.mri\].budget\[0\]: needs 'nfe' and 'settings'"),
    ("[[red-diff.mri.budget]]\nnfe = 0\nsettings = {}\n", r"budget\[0\]: nfe must be an integer >= 1, got 0"),
    ("[[red-diff.mri.budget]]\nnfe = 100\nsettings = {}\n", r"budget\[0\]: a setting at 100 network evaluations is already given"),
    ("[[red-diff.mri.budget]]\nnfe = 30\nsettings = {}\nsteps = 3\n", r"budget\[0\]: needs 'nfe' and 'settings' and may have"),
    ("[[red-diff.mri.budget]]\nnfe = 30\nsettings = 0.1\n", r"budget\[0\]: settings must be a table, got 0.1"),
])
def test_bad_budget_tables_name_the_file_and_the_table(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message) as err:
        _defaults(tmp_path, ENTRY + extra)
    assert str(tmp_path / "defaults.toml") in str(err.value)


def test_the_shipped_registry_serves_tds_on_ct_its_30_evaluation_setting():
    """TDS's CT setting chosen at 50 evaluations diverges at 30 on real anatomy (docs/results/calibration);
    a 30-evaluation run takes the setting chosen at 30, a 100-evaluation run the 50-evaluation one."""
    assert ("tds", "ct") in load_defaults(DEFAULTS_FILE)
    assert configured_sampler("tds", 30, "ct").twist_inflation == 0.3
    assert configured_sampler("tds", 100, "ct").twist_inflation == 0.1
    assert sampler_settings("tds", "ct", nfe=30)["twist_inflation"] == 0.3
    assert sampler_settings("tds", "ct", {"twist_inflation": 1.0}, nfe=30)["twist_inflation"] == 1.0
    assert default_entry("tds", "ct", 30).nfe == 30 and default_entry("tds", "ct").nfe == 50
