"""`sortition score`: streamed, atomic, identical to the columnar call, and on Dask row for row."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from cli_helpers import invoke

from sortition.serving import Client, Configuration
from sortition.workflows.score import Source, load_job, score_audience

UFC = Path(__file__).resolve().parents[1] / "conformance" / "eppo" / "ufc"
FLAGS, BANDIT_FLAGS, MODELS = UFC / "flags-v1.json", UFC / "bandit-flags-v1.json", UFC / "bandit-models-v1.json"
ACTIONS = {"nike": {"brand_affinity": 1.2, "loyalty_tier": "gold"}, "adidas": {"brand_affinity": 0.8}, "puma": {}}


@pytest.fixture
def audience(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 3000
    frame = pd.DataFrame({
        "user_id": [f"user-{i}" for i in range(n)],
        "country": rng.choice(["US", "Canada", "France", "UK"], n),
        "email": rng.choice(["a@mycompany.com", "b@example.com", None], n),
        "account_age": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 10, n)),
        "gender_identity": rng.choice(["female", "male"], n),
    })
    frame.to_parquet(tmp_path / "aud.parquet", row_group_size=700)
    frame.to_csv(tmp_path / "aud.csv", index=False)
    with duckdb.connect(str(tmp_path / "aud.duckdb")) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE people AS SELECT * FROM frame")
    (tmp_path / "actions.json").write_text(json.dumps(ACTIONS))
    return frame


def test_cli_scores_parquet_csv_and_duckdb_alike(tmp_path, audience):
    expected = Client(Configuration.from_json(FLAGS.read_text())).assign_table(
        "new-user-onboarding", audience, subject="user_id", default="none")
    for name, extra in (("aud.parquet", []), ("aud.csv", []), ("aud.duckdb", ["--table", "people"]),
                        ("aud.duckdb", ["--query", "SELECT * FROM people"])):
        out = tmp_path / "out.parquet"
        result = invoke(["score", FLAGS, tmp_path / name, out, "--flag", "new-user-onboarding", "--subject", "user_id",
                         "--default", "none", "--batch-rows", "1000", *extra])
        assert result.exit_code == 0, result.output
        assert "scored 3,000 rows" in result.text
        assert pq.read_table(out).equals(expected), name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_bandit_scores_match_the_single_call(tmp_path, audience):
    out = tmp_path / "bandit.parquet"
    result = invoke(["score", BANDIT_FLAGS, tmp_path / "aud.parquet", out, "--flag", "banner_bandit_flag",
                     "--bandits", MODELS, "--actions", tmp_path / "actions.json", "--subject", "user_id"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    client = Client(Configuration.from_json(BANDIT_FLAGS.read_text(), MODELS.read_text()))
    for row in table.slice(0, 200).to_pylist():
        attrs = audience.set_index("user_id").loc[row["subject"]].to_dict()
        attrs = {k: v for k, v in attrs.items() if v is not None and v == v}
        single = client.get_bandit_action("banner_bandit_flag", row["subject"], attrs, ACTIONS, None)
        assert (row["variation"], row["action"]) == (single.variation, single.action)
        if single.evaluation is not None:
            assert row["action_probability"] == single.evaluation.action_weight


def test_dask_local_cluster_is_identical_row_for_row(tmp_path, audience):
    job = load_job(BANDIT_FLAGS, "banner_bandit_flag", subject="user_id", bandits=MODELS,
                   actions=tmp_path / "actions.json")
    single, on_dask = tmp_path / "single.parquet", tmp_path / "dask.parquet"
    for kind in ("aud.parquet", "aud.csv"):
        source = Source(tmp_path / kind, batch_rows=800)
        assert score_audience(job, source, single) == 3000
        assert score_audience(job, source, on_dask, workers=2, processes=False) == 3000
        assert pq.read_table(on_dask).equals(pq.read_table(single)), kind


def test_a_failed_run_leaves_no_output(tmp_path, audience, monkeypatch):
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous")
    import sortition.workflows.score as score

    calls = []

    def broken(job, batch):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("disk full")
        return original(job, batch)

    original = score.score_batch
    monkeypatch.setattr(score, "score_batch", broken)
    job = load_job(FLAGS, "new-user-onboarding", subject="user_id")
    with pytest.raises(RuntimeError, match="disk full"):
        score_audience(job, Source(tmp_path / "aud.parquet", batch_rows=500), out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_input_is_refused_with_what_to_fix(tmp_path, audience):
    base = ["score", FLAGS, tmp_path / "aud.parquet", tmp_path / "o.parquet"]
    cases = [
        (base + ["--flag", "new-user-onbording"], "did you mean 'new-user-onboarding'"),
        (base + ["--flag", "new-user-onboarding"], "subject column 'subject' is not in the table"),
        (["score", FLAGS, tmp_path / "aud.duckdb", tmp_path / "o.parquet", "--flag", "new-user-onboarding"],
         "give --table NAME or --query SQL"),
        (["score", FLAGS, tmp_path / "aud.txt.gz", tmp_path / "o.parquet", "--flag", "x"], "does not exist"),
        (base + ["--flag", "new-user-onboarding", "--bandits", MODELS], "--bandits and --actions go together"),
        (["score", FLAGS, tmp_path / "aud.parquet", tmp_path / "aud.parquet", "--flag", "new-user-onboarding",
          "--subject", "user_id"], "is the input"),
        (["score", FLAGS, tmp_path / "aud.parquet", tmp_path / "o.parquet", "--flag", "integer-flag",
          "--subject", "user_id", "--default", "abc"], "error: --default 'abc' is not an INTEGER value"),
        # was DuckDB's two-line catalog error, with its hint of an internal table ("pg_depend")
        (["score", FLAGS, tmp_path / "aud.duckdb", tmp_path / "o.parquet", "--flag", "new-user-onboarding",
          "--table", "peple"],
         "aud.duckdb has no table 'peple' (did you mean 'people'?); its tables are 'people'"),
        (["score", FLAGS, tmp_path / "aud.duckdb", tmp_path / "o.parquet", "--flag", "new-user-onboarding",
          "--query", "SELECT * FROM nope"], "Table with name nope does not exist!"),
    ]
    for args, message in cases:
        result = invoke(args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.text, (args, result.text)
        assert result.output.count("\n") == 1, result.output  # one line: no hints about DuckDB's catalog
    assert not (tmp_path / "o.parquet").exists()
