"""A user's scenarios: loaded from a file in the library's form, checked on load, swept like the library's."""

import textwrap
from pathlib import Path

import numpy as np
import pytest

from sortition.scenarios import generate
from sortition.scenarios.user import load_scenario_file, load_scenario_spec, resolve_scenarios
from sortition.workflows.calibrate import SweepTask, load_results, run_sweep, simulate_data, stale_results, sweep_tasks

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "scenarios.py"


def _write(tmp_path, text, name="worlds.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_example_file_defines_a_world_with_truth_kept_apart():
    (loyalty,) = load_scenario_file(EXAMPLE).values()
    assert loyalty.name == "loyalty" and loyalty.source == str(EXAMPLE.resolve()) and len(loyalty.digest) == 64
    world = loyalty.make(3, "binary")
    data, truth = generate(world, 2000, seed=3)
    assert data.arms == ("control", "arm_1", "arm_2") and truth.contrasts.shape == (2000, 2)
    assert not {"expected", "truth"} & set(data.covariates.columns)
    # returning visitors gain, new ones lose, arm 2 half as much as arm 1 (binary: 0.10 per unit of lift)
    returning = data.covariates["returning"].to_numpy(dtype=bool)
    assert truth.contrasts[returning, 0].mean() > 0.02 > 0 > truth.contrasts[~returning, 0].mean()
    assert np.allclose(truth.contrasts[:, 1], truth.contrasts[:, 0] / 2, atol=1e-9)


@pytest.mark.parametrize("text, message", [
    ("x = 1\n", "defines no LIFTS"),
    ("LIFTS = {'w': 3}\n", "LIFTS['w'] must be a function lift(visitors, K), got int 3"),
    ("import numpy as np\nLIFTS = {'w': lambda v, k: np.zeros(len(v))}\n", "returned shape (64,) for 64 visitors and K=2"),
    ("import numpy as np\nLIFTS = {'w': lambda v, k: np.full((len(v), k - 1), np.nan)}\n", "non-finite"),
    ("LIFTS = {'w': lambda v, k: v['colour']}\n", "LIFTS['w'] fails on 64 sample visitors with K=2: KeyError"),
    ("import numpy as np\nLIFTS = {'gradient': lambda v, k: np.zeros((len(v), k - 1))}\n", "'gradient' is a library"),
    ("import numpy as np\nLIFTS = {'steep': lambda v, k: np.zeros((len(v), k - 1))}\nFIXED_ARMS = {'stepp': ('a', 'b')}\n",
     "FIXED_ARMS names 'stepp' (did you mean 'steep'?)"),
    ("import numpy as np\nLIFTS = {'w': lambda v, k: np.zeros((len(v), k - 1))}\nDEFAULT_OUTCOME = {'w': 'binery'}\n",
     "(did you mean 'binary'?)"),
    ("def broken(:\n", "failed to run: SyntaxError"),
])
def test_a_bad_file_is_refused_naming_the_file_the_object_and_the_fault(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        load_scenario_file(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_names_resolve_against_the_library_files_and_modules(tmp_path, monkeypatch):
    path = _write(tmp_path, """
        import numpy as np
        def steep(v, k):
            return np.tile(2.0 * v["returning"].to_numpy(dtype=float)[:, None], (1, k - 1))
        LIFTS = {"steep": steep}
        FIXED_ARMS = {"steep": ("control", "bold")}
    """, "my_worlds.py")
    worlds = resolve_scenarios(["gradient", "steep"], [path])
    assert [w.name for w in worlds] == ["gradient", "steep"] and worlds[1].fixed_arms == ("control", "bold")
    assert [w.name for w in resolve_scenarios(None, [path])][-1] == "steep"  # default sweep plus the file's
    with pytest.raises(ValueError, match=r"unknown scenario 'stepe' \(did you mean 'steep'\?\)"):
        resolve_scenarios(["stepe"], [path])
    with pytest.raises(ValueError, match=r"'gradiant' \(did you mean 'gradient'\?\).*--scenario-file"):
        resolve_scenarios(["gradiant"])
    monkeypatch.syspath_prepend(str(tmp_path))
    (spec,) = load_scenario_spec("my_worlds:steep").values()
    assert spec.source == "my_worlds:steep" and spec.digest == worlds[1].digest
    with pytest.raises(ValueError, match=r"has no 'stee' \(did you mean 'steep'\?\)"):
        load_scenario_spec("my_worlds:stee")


def test_a_user_scenario_sweeps_and_a_changed_file_is_not_resumed_as_the_old(tmp_path):
    path = _write(tmp_path, "import numpy as np\nLIFTS = {'flat': lambda v, k: np.full((len(v), k - 1), 0.5)}\n")
    db = tmp_path / "sweep.duckdb"
    first = sweep_tasks(resolve_scenarios(["flat", "homogeneous"], [path]), [300], [2], ["continuous"], [True], 1,
                        "stratified", {"draws": 50})
    user, library = first
    assert user.source == str(path.resolve()) and '"digest"' in user.key and '"digest"' not in library.key
    assert library.key == SweepTask("homogeneous", 300, 2, "continuous", True, 0, "stratified", {"draws": 50}).key
    _, truth, _, _ = simulate_data(user)
    assert np.allclose(truth, 0.5)
    assert run_sweep(first, db, processes=False) == 2 and stale_results(db, first) == {}
    path.write_text(path.read_text().replace("0.5", "0.7"))  # the world changed
    second = sweep_tasks(resolve_scenarios(["flat", "homogeneous"], [path]), [300], [2], ["continuous"], [True], 1,
                         "stratified", {"draws": 50})
    assert second[0].key != first[0].key and second[1].key == first[1].key
    assert stale_results(db, second) == {("flat", str(path.resolve())): 1}
    assert run_sweep(second, db, processes=False) == 1  # only the changed world runs again
    assert len(load_results(db, second)) == 2
    import duckdb

    with duckdb.connect(str(db)) as con:
        rows = con.execute("SELECT scenario, source, digest FROM calibration_runs ORDER BY scenario, digest").fetchall()
    assert [r[0] for r in rows] == ["flat", "flat", "homogeneous"] and rows[2][1:] == ("library", "")
    assert {r[2] for r in rows[:2]} == {first[0].digest, second[0].digest}


def test_a_scenario_with_fixed_arms_is_swept_at_its_own_k_only(tmp_path):
    path = _write(tmp_path, """
        import numpy as np
        LIFTS = {"pair": lambda v, k: np.zeros((len(v), k - 1))}
        FIXED_ARMS = {"pair": ("control", "new")}
    """)
    worlds = resolve_scenarios(["pair", "storefront", "homogeneous"], [path])
    tasks = sweep_tasks(worlds, [300], [2, 3, 4], ["continuous"], [False], 1, engine="stratified")
    ks = {}
    for task in tasks:
        ks.setdefault(task.scenario, []).append(task.arms)
        assert len(task.scenario_object().arms) == task.arms  # the label is the experiment's K
    # was: storefront's K=2 task ran 3 arms under the label 2, and its K=4 task failed on the cluster
    assert ks == {"pair": [2], "storefront": [3], "homogeneous": [2, 3, 4]}
