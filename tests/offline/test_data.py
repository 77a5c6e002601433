import duckdb
import numpy as np
import pandas as pd
import pytest

from sortition.data import ExperimentData
from sortition.data.files import read_table


def frame(n=40, seed=0, with_p=False):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "uid": [f"u{i}" for i in range(n)],
        "arm": np.array(["control", "a", "b"])[np.arange(n) % 3],
        "y": rng.exponential(1.0, n),
        "device": rng.choice(["mobile", "desktop"], n),
        "returning": rng.random(n) < 0.5,
        "recency": np.where(rng.random(n) < 0.2, np.nan, rng.exponential(5, n)),
    }).assign(**({"p": np.full(n, 1 / 3)} if with_p else {}))


def test_roles_and_default_covariates():
    d = ExperimentData.from_frame(frame(with_p=True), subject="uid", arms=["control", "a", "b"], propensity="p")
    assert d.arms == ("control", "a", "b") and d.control == "control"
    assert list(d.covariates) == ["device", "returning", "recency"]
    assert d.subject[0] == "u0" and d.arm_index[:3].tolist() == [0, 1, 2]
    np.testing.assert_allclose(d.propensity, 1 / 3)
    assert d.covariates["recency"].isna().sum() > 0  # missing values kept raw
    x = d.design_matrix()
    assert x.shape == (40, len(d.encoding.names)) and np.isfinite(x).all()
    assert "recency__missing" in d.encoding.names and "device=mobile" in d.encoding.names


def test_default_arm_order_is_sorted_with_explicit_control():
    assert ExperimentData.from_frame(frame(), subject="uid").arms == ("a", "b", "control")
    assert ExperimentData.from_frame(frame(), subject="uid", control="control").arms == ("control", "a", "b")


def test_frame_round_trip_keeps_rows_and_names():
    d = ExperimentData.from_frame(frame(with_p=True), subject="uid", control="control", propensity="p")
    again = ExperimentData.from_frame(d.frame(), subject="uid", arms=d.arms, propensity="p")
    assert again.arms == d.arms and (again.arm_index == d.arm_index).all()
    pd.testing.assert_frame_equal(again.covariates, d.covariates)


@pytest.mark.parametrize("mutate, kw, match", [
    (lambda f: f.assign(arm=f.arm.where(f.index != 5, "zzz")), {"arms": ["control", "a", "b"]},
     r"arm column 'arm' holds arms not in .*'zzz'.*rows \[5\]"),
    (lambda f: f, {"arms": ["control", "a", "b", "c"]}, r"arm\(s\) \['c'\] have no rows"),
    (lambda f: f.assign(arm="a"), {}, "at least two"),
    (lambda f: f.assign(y=f.y.where(f.index != 7, np.nan)), {}, r"outcome column 'y' .*rows \[7\]"),
    (lambda f: f.assign(y=f.y.astype(object).where(f.index != 2, "x")), {}, r"non-numeric .*rows \[2\]"),
    (lambda f: f.assign(p=f.p.where(f.index != 3, 0.0)), {"propensity": "p"}, r"propensity column 'p' .*\(0, 1\].*rows \[3\]"),
    (lambda f: f.assign(p=f.p.where(f.index != 4, 1.5)), {"propensity": "p"}, r"rows \[4\]"),
    (lambda f: f.assign(uid=f.uid.where(f.index != 9, "u1")), {"subject": "uid"}, r"duplicate keys at rows \[1, 9\]"),
    (lambda f: f, {"outcome": "revenue"}, "outcome column 'revenue' is not in the data"),
    # was "Pass covariates[1]=<column name>": no such keyword, and no word of --covariates
    (lambda f: f, {"covariates": ["uid", "ages"]},
     r"covariates\[1\] column 'ages' is not in the data; columns are .*\. "
     r"Fix covariates\[1\] in covariates=\[\.\.\.\] \(--covariates on the command line\)\.$"),
])
def test_bad_inputs_name_the_column_and_rows(mutate, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ExperimentData.from_frame(mutate(frame(with_p=True)), **{"subject": "uid", **kw})


def test_outcome_kind_checks():
    f = frame()
    f.loc[6, "y"] = -1.0
    d = ExperimentData.from_frame(f, subject="uid")
    d.check_outcome("continuous")
    with pytest.raises(ValueError, match=r"must be >= 0 for outcome='revenue' .*rows \[6\]"):
        d.check_outcome("revenue")
    with pytest.raises(ValueError, match=r"must be 0/1.*'revenue' \(--kind on the command line\)\.$"):
        d.check_outcome("binary")


def test_constant_and_empty_covariates_warn_and_drop():
    f = frame(with_p=True).assign(const=1, empty=np.nan)
    with pytest.warns(UserWarning) as rec:
        d = ExperimentData.from_frame(f, propensity="p", subject="uid")
    msgs = " ".join(str(r.message) for r in rec)
    assert "'const' is constant" in msgs and "'empty' is entirely missing" in msgs
    assert "const" not in d.covariates and "empty" not in d.covariates


def test_list_and_record_covariates_warn_and_drop(tmp_path):
    """Parquet list and struct columns: 'unhashable type: numpy.ndarray' was the whole error."""
    f = frame()
    f["tags"] = [["new", "vip"][: 1 + i % 2] for i in range(len(f))]
    f["meta"] = [{"plan": "pro"} if i % 3 else None for i in range(len(f))]
    path = tmp_path / "nested.parquet"
    f.to_parquet(path)
    with pytest.warns(UserWarning) as rec:
        d = ExperimentData.from_frame(read_table(path), subject="uid")
    msgs = [str(r.message) for r in rec]
    assert "covariate column 'tags' holds nested values (lists or records), such as ['new']; dropped. Flatten " \
           "it into columns of numbers or text to use it." in msgs
    assert any(m.startswith("covariate column 'meta' holds nested values (lists or records), such as {'plan': ")
               for m in msgs)
    assert "tags" not in d.covariates and "meta" not in d.covariates and "device" in d.covariates


def test_a_numeric_covariate_with_a_placeholder_warns():
    """'unknown' among ages makes pandas read the column as text, which the forests can only split as
    categories: said, naming the column and the stray value; all-numeric text (zip codes) is left alone."""
    f = frame()
    f["age"] = [str(20 + i % 10) for i in range(len(f))]
    f["zip"] = [f"{i % 7:05d}" for i in range(len(f))]
    f.loc[3, "age"] = "unknown"
    with pytest.warns(UserWarning) as rec:
        d = ExperimentData.from_frame(f, subject="uid")
    msgs = [str(r.message) for r in rec]
    assert [m for m in msgs if "'age' holds numbers except for 1 value ('unknown')" in m]
    assert not [m for m in msgs if "'zip'" in m] and "age" in d.covariates


def test_loaders_agree(tmp_path):
    f = frame(with_p=True)
    f.to_parquet(tmp_path / "x.parquet")
    f.to_csv(tmp_path / "x.csv", index=False)
    kw = dict(subject="uid", control="control", propensity="p")
    a = ExperimentData.from_parquet(tmp_path / "x.parquet", **kw)
    b = ExperimentData.from_csv(tmp_path / "x.csv", **kw)
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    con.execute(f"create table t as select * from read_parquet('{tmp_path / 'x.parquet'}')")
    c = ExperimentData.from_duckdb(con, "select * from t order by uid", **kw)
    con.close()
    e = ExperimentData.from_duckdb(tmp_path / "x.duckdb", "select * from t", **kw)
    for d in (b, c, e):
        assert d.arms == a.arms and d.n == a.n
    assert (b.arm_index == a.arm_index).all() and np.allclose(b.outcome, a.outcome)
    order = np.argsort(a.subject)
    assert (c.subject == a.subject[order]).all() and np.allclose(c.outcome, a.outcome[order])


def test_identifier_like_covariate_is_dropped():
    with pytest.warns(UserWarning, match="'uid' has a distinct value on every row"):
        d = ExperimentData.from_frame(frame())
    assert "uid" not in d.covariates


def test_subset_keeps_arms():
    d = ExperimentData.from_frame(frame(), subject="uid", control="control")
    s = d.subset(d.arm_index != 2)
    assert s.arms == d.arms and s.n == (d.arm_index != 2).sum() and isinstance(s.covariates.index, pd.RangeIndex)
