import pytest

from search.space.space import SpaceError, builtin_space_path, load_space, parse_space


def test_default_space_is_the_issue_space():
    s = load_space(None)
    by_name = {p.name: p for p in s.params}
    assert by_name["batch_norm"].choices == (False, True)
    assert by_name["optimizer"].choices == ("adam", "sgd")
    assert by_name["batch_size"].choices == (10, 100, 500)
    lr = by_name["lr"]
    assert (lr.low, lr.high, lr.log) == (1e-5, 1e-2, True)
    assert s.fixed["momentum"] == 0.9


def test_table1_space_is_the_report_grid():
    s = load_space(builtin_space_path("alexnet-cifar10-table1.toml"))
    assert s.grid() == {
        "batch_norm": [False, True],
        "optimizer": ["adam", "sgd"],
        "batch_size": [10, 100, 500],
        "lr": [1e-3, 1e-4, 1e-5],
    }
    assert s.grid_size() == 36


def test_build_merges_fixed_sampled_and_cli_values():
    model, train = load_space(None).build(
        {"batch_norm": True, "optimizer": "sgd", "batch_size": 10, "lr": 0.01}, epochs=3, seed=7
    )
    assert model.batch_norm is True
    assert (train.optimizer, train.lr, train.momentum, train.batch_size, train.epochs, train.seed) == (
        "sgd",
        0.01,
        0.9,
        10,
        3,
        7,
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("bogus = 1\n[params]\nlr = {low = 1e-4, high = 1e-3}", "unknown key 'bogus'"),
        ("[params]\nwidth = {choices = [1, 2]}", "params.width: unknown parameter"),
        ("[params]\nlr = {low = 1e-4, high = 1e-3, scale = 2}", "params.lr.scale: unknown key"),
        ("[params]\nbatch_size = {choices = []}", "params.batch_size.choices must be a non-empty list"),
        ("[params]\nlr = {low = 1e-2, high = 1e-3}", "params.lr: low (0.01) > high (0.001)"),
        ("[params]\nlr = {low = 0.0, high = 1e-3, log = true}", "params.lr: log scale needs low > 0"),
        ("[params]\nlr = {low = -1.0, high = 1e-3, log = true}", "params.lr: log scale needs low > 0"),
        ("[params]\noptimizer = {choices = ['adam', 'rmsprop']}", "params.optimizer.choices: 'rmsprop' is not allowed"),
        ("[params]\nepochs = {choices = [1, 2]}", "params.epochs: set by the command line"),
        ("[params]\nlr = {low = 1e-4, high = 1e-3}\n[fixed]\nmomentum = 'high'", "fixed.momentum"),
        ("[params]\n", "[params] is empty"),
        ("[params\n", "not valid TOML"),
    ],
)
def test_space_errors_name_the_key(text, fragment):
    with pytest.raises(SpaceError) as e:
        parse_space(text, "my.toml")
    assert fragment in str(e.value) and str(e.value).startswith("my.toml: ")


def test_grid_refuses_a_range():
    with pytest.raises(SpaceError, match="params.lr is a range"):
        load_space(None).grid()


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="--space: no file at"):
        load_space(tmp_path / "nope.toml")


def test_report_space_is_the_reports_final_config():
    s = load_space(builtin_space_path("alexnet-cifar10-report.toml"))
    assert s.grid() == {"batch_norm": [False], "optimizer": ["adam"], "batch_size": [100], "lr": [1e-3]}
