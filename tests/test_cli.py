"""The invdiff command: the demo job writes its outputs and reports the exact answer beside the sampled one."""

from __future__ import annotations

import json

from invdiff.cli import main


def test_demo_writes_outputs_close_to_the_exact_posterior(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--particles", "4096", "--steps", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "sampled" in out and "gmm_posterior.json" in out
    summary = json.loads((tmp_path / "gmm_posterior.json").read_text())
    assert (tmp_path / "gmm_posterior.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert summary["sampler"]["network_evals"] == 50
    # importance sampling with ESS ~100 recovers the mean to a fraction of the posterior's spread
    assert summary["moment_errors"]["mean_rel"] < 0.5
    ew, sw = summary["mode_weights"]["exact"], summary["mode_weights"]["sampled"]
    assert sum(abs(a - b) for a, b in zip(ew, sw)) < 0.2


def test_bad_options_are_rejected(capsys):
    assert main(["demo", "--particles", "0"]) == 2
    assert "--particles must be >= 1" in capsys.readouterr().err
