"""The validation-grid search shared by the benchmark scripts."""

import math

import pytest

from invdiff.benchmark.tuning import tune_on_grid


def test_the_grid_is_extended_until_the_best_value_is_inside():
    tried = []

    def score(v):
        tried.append(v)
        return -abs(math.log(v / 8.0))  # peak at 8

    best, scores = tune_on_grid(score, [1, 2, 4], extensions=3)
    assert best == 8 and tried == [1, 2, 4, 8, 16] and all(isinstance(v, int) for v in scores)
    best, _ = tune_on_grid(lambda v: -v, [0.3, 1.0, 3.0], extensions=1)
    assert best == 0.09  # one step below the grid, rounded to 3 digits, then the budget is spent


def test_an_extension_the_sampler_refuses_ends_the_extension():
    """DAPS refuses lr >= 2: a grid whose best is its largest value 1.0 stops at the refused 3.0."""
    def score(v):
        if v >= 2:
            raise ValueError(f"lr must be in (0, 2), got {v}")
        return v

    best, scores = tune_on_grid(score, [0.1, 0.3, 1.0], extensions=2)
    assert best == 1.0 and sorted(scores) == [0.1, 0.3, 1.0]
    with pytest.raises(ValueError, match="lr must be"):  # a refused value of the grid itself is the config's error
        tune_on_grid(score, [1.0, 3.0], extensions=2)


def test_a_grid_through_zero_is_searched_but_never_extended(tmp_path):
    """APS's residual_std grid starts at 0 (the paper's sampler): searched as given at extend 0; a geometric
    extension from it is refused before any point runs, and a configuration asking for one is refused."""
    from invdiff.benchmark.config import ConfigError, load_config

    best, scores = tune_on_grid(lambda v: -abs(v - 0.01), [0.0, 0.01, 0.1], extensions=0)
    assert best == 0.01 and sorted(scores) == [0.0, 0.01, 0.1]
    tried = []
    with pytest.raises(ValueError, match="start above 0"):
        tune_on_grid(tried.append, [0.0, 0.01, 0.1], extensions=1)
    assert tried == []
    path = tmp_path / "c.toml"
    path.write_text('[benchmark]\nname = "x"\n[[problem]]\nname = "inpaint"\nkind = "task"\ntask = "inpaint"\n'
                    '[[sampler]]\nname = "aps"\ngrid = { residual_std = [0.0, 0.01] }\n')
    with pytest.raises(ConfigError, match="value <= 0.*extend = 0"):
        load_config(path)
    path.write_text(path.read_text() + "extend = 0\n")
    assert load_config(path).samplers[0].grid == {"residual_std": [0.0, 0.01]}


def test_tuning_runs_with_the_problems_prior(tmp_path, monkeypatch):
    """A problem's `prior` is the one its test cells use; tuning on its validation data must use it too
    (it once fell back to the operator's default prior)."""
    import invdiff.benchmark.cells as cells
    from invdiff.benchmark.config import load_config
    from invdiff.benchmark.tuning import tune

    config_file = tmp_path / "c.toml"
    config_file.write_text('[benchmark]\nname = "t"\nnfe = [4]\ntune = true\n'
                           '[[problem]]\nname = "ct"\ndata = ["ellipses:1:3"]\noperator = "ct"\nviews = 8\n'
                           'prior = "ct_128_fold_b"\nvalidation = { data = ["ellipses:1:7"], slices = [0], seed = 1 }\n'
                           '[[sampler]]\nname = "dds"\ngrid = { gamma = [1.0, 10.0] }\n')
    config = load_config(config_file)
    used = []

    def fake_evaluate(problem, name, nfe, settings, particles, seed, prior, *args, **kwargs):
        used.append(prior)
        return {"metrics": {"PSNR": -abs(math.log(settings["gamma"] / 10.0))}}, None

    monkeypatch.setattr(cells, "evaluate", fake_evaluate)
    chosen = tune(config, config.problems[0], config.samplers[0], 4, tmp_path / "out", log=lambda *_: None)
    assert chosen == {"gamma": 10.0} and used and set(used) == {"ct_128_fold_b"}


def test_a_wider_extension_searches_again_and_reuses_the_points_already_run(tmp_path, monkeypatch):
    """The choice depends on how far the grid may be extended: a config that allows more extensions must
    not reuse the narrower search's choice, only its validation runs."""
    import invdiff.benchmark.cells as cells
    from invdiff.benchmark.config import load_config
    from invdiff.benchmark.tuning import tune

    text = ('[benchmark]\nname = "t"\nnfe = [4]\ntune = true\n'
            '[[problem]]\nname = "ct"\ndata = ["ellipses:1:3"]\noperator = "ct"\nviews = 8\n'
            'validation = { data = ["ellipses:1:7"], slices = [0], seed = 1 }\n'
            '[[sampler]]\nname = "dds"\ngrid = { gamma = [1.0, 10.0] }\nextend = EXTEND\n')
    runs = []

    def fake_evaluate(problem, name, nfe, settings, particles, seed, prior, *args, **kwargs):
        runs.append(settings["gamma"])
        return {"metrics": {"PSNR": -abs(math.log(settings["gamma"] / 1000.0))}}, None  # peak at 1000

    monkeypatch.setattr(cells, "evaluate", fake_evaluate)
    chosen = []
    for extend in (0, 2):
        path = tmp_path / f"c{extend}.toml"
        path.write_text(text.replace("EXTEND", str(extend)))
        config = load_config(path)
        chosen.append(tune(config, config.problems[0], config.samplers[0], 4, tmp_path / "out", log=lambda *_: None))
    assert chosen == [{"gamma": 10.0}, {"gamma": 1000.0}] and runs == [1.0, 10.0, 100.0, 1000.0]


def test_a_budget_can_take_the_settings_chosen_at_another(tmp_path, monkeypatch):
    """`settings_from_budget = { 8 = 4 }`: the 8-evaluation cells take the choice of the search at 4 (searched
    there even when only budget 8 runs), no search runs at 8, and the page says so; a bad mapping is refused."""
    import invdiff.benchmark.cells as cells
    from invdiff.benchmark.config import ConfigError, load_config
    from invdiff.benchmark.report import publish
    from invdiff.benchmark.tuning import tune_all

    head = '[benchmark]\nname = "t"\nnfe = [4, 8]\ntune = true\nsettings_from_budget = MAP\n'
    body = ('[[problem]]\nname = "ct"\ndata = ["ellipses:1:3"]\noperator = "ct"\nviews = 8\n'
            'validation = { data = ["ellipses:1:7"], slices = [0], seed = 1 }\n'
            '[[sampler]]\nname = "dds"\ngrid = { gamma = [1.0, 10.0] }\nextend = 0\n')
    path = tmp_path / "c.toml"
    runs = []

    def fake_evaluate(problem, name, nfe, settings, particles, seed, prior, *args, **kwargs):
        runs.append((nfe, settings["gamma"]))
        return {"metrics": {"PSNR": -abs(math.log(settings["gamma"] / 10.0))}}, None

    monkeypatch.setattr(cells, "evaluate", fake_evaluate)
    path.write_text(head.replace("MAP", "{ 8 = 4 }") + body)
    config = load_config(path).restricted(budgets=(8,))
    chosen = tune_all(config, tmp_path / "out", log=lambda *_: None)
    assert chosen == {("ct", "dds", 8): {"gamma": 10.0}} and runs == [(4, 1.0), (4, 10.0)]
    assert [c.sampler_settings["gamma"] for c in config.cells(chosen) if c.nfe == 8] == [10.0]
    (tmp_path / "out" / "results.md").write_text("report\n")
    (tmp_path / "out" / "results.csv").write_text("problem\n")
    page = (publish(tmp_path / "out", tmp_path / "page", config, "invdiff benchmark c.toml", 1)).read_text()
    assert "The 8-evaluation cells ran at the settings chosen at 4 (`settings_from_budget`)" in page
    for mapping, message in (("{ 8 = 2 }", r"budgets \[2\]"), ("{ 16 = 4 }", r"budgets \[16\]"),
                             ("{ 8 = 4, 4 = 8 }", "not searched itself"), ("{ 8 = 8 }", "not searched itself"),
                             ("{ 8 = 4.0 }", "integers"), ("[8, 4]", "must be a table")):
        path.write_text(head.replace("MAP", mapping) + body)
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    path.write_text(head.replace("MAP", "{ 8 = 4 }").replace("tune = true", "tune = false") + body)
    with pytest.raises(ConfigError, match="needs tune = true"):
        load_config(path)


def test_a_task_can_estimate_its_coil_maps_another_way(tmp_path):
    """`calib_rows` on an MRI task changes how its coil maps are estimated, for test and validation alike,
    and is part of the cells' keys; on a task without coil maps, or out of range, it is refused."""
    from invdiff.benchmark.cells import load_problem
    from invdiff.benchmark.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    text = ('[benchmark]\nname = "t"\nnfe = [4]\n[[problem]]\nname = "p"\nkind = "task"\ntask = "TASK"\nEXTRA\n'
            '[[sampler]]\nname = "cg"\n')
    path.write_text(text.replace("TASK", "mri-8x").replace("EXTRA", "calib_rows = 48"))
    config = load_config(path)
    problem = load_problem(config.problems[0], "test", tmp_path / "out")
    assert problem.info["espirit_calibration"] == [48, 10]
    path.write_text(text.replace("TASK", "mri-8x").replace("EXTRA", ""))
    plain = load_config(path)
    assert plain.cells()[0].key != config.cells()[0].key
    assert load_problem(plain.problems[0], "test", tmp_path / "out").info["espirit_calibration"] == [10, 10]
    for task, extra, message in (("ct-30", "calib_rows = 48", "not MRI"), ("mri-8x", "calib_rows = -1", "calib_rows"),
                                 ("mri-8x", "acceleration = 4", "operator choices")):
        path.write_text(text.replace("TASK", task).replace("EXTRA", extra))
        with pytest.raises(ConfigError, match=message):
            load_config(path)
