"""Every Eppo test vector, against the plain file, its obfuscated twin and the wire wrapper."""

import json

import pytest
from ufc_cases import UFC, cases, read
from cli_helpers import invoke

from sortition.serving import Client, Configuration
from sortition.serving.conformance import run_case, run_path
from sortition.serving.obfuscation import md5_hex, obfuscate_json

FLAG_CASES = cases("tests")
BANDIT_CASES = cases("bandit-tests")


@pytest.fixture(scope="module")
def plain():
    return Client(Configuration.from_json(read("flags-v1.json")))


@pytest.fixture(scope="module")
def obfuscated():
    cfg = Configuration.from_json(obfuscate_json(read("flags-v1.json")))
    assert cfg.obfuscated and "new-user-onboarding" not in cfg.flags
    return Client(cfg)


@pytest.fixture(scope="module")
def bandits():
    return Client(Configuration.from_json(read("bandit-flags-v1.json"), read("bandit-models-v1.json")))


def test_bundled_data_is_complete():
    assert sum(len(c["subjects"]) for _, c in FLAG_CASES) == 225
    assert sum(len(c["subjects"]) for _, c in BANDIT_CASES) >= 20


@pytest.mark.parametrize(("name", "case"), FLAG_CASES, ids=[n for n, _ in FLAG_CASES])
def test_flag_vectors_plain(plain, name, case):
    failures = [o for o in run_case(plain, case, name) if not o.passed]
    assert not failures, failures[:3]


@pytest.mark.parametrize(("name", "case"), FLAG_CASES, ids=[n for n, _ in FLAG_CASES])
def test_flag_vectors_obfuscated(obfuscated, name, case):
    # matchedRule is reported as stored, i.e. obfuscated; everything else is identical.
    failures = [o for o in run_case(obfuscated, case, name, skip_detail_fields=("matchedRule",)) if not o.passed]
    assert not failures, failures[:3]


def test_obfuscated_matched_rule_is_the_stored_rule(obfuscated):
    d = obfuscated.get_assignment_details("regex-flag", "alice", {"email": "alice@example.com"}, "none")
    assert d.value == "partial-example"
    (condition,) = d.matched_rule["conditions"]
    assert condition["attribute"] == md5_hex("email") and condition["operator"] == md5_hex("MATCHES")


@pytest.mark.parametrize(("name", "case"), BANDIT_CASES, ids=[n for n, _ in BANDIT_CASES])
def test_bandit_vectors(bandits, name, case):
    failures = [o for o in run_case(bandits, case, name) if not o.passed]
    assert not failures, failures[:3]


def test_bandit_vectors_obfuscated_and_wrapped():
    wrapper = json.dumps({
        "version": 1,
        "config": {"response": obfuscate_json(read("bandit-flags-v1.json")), "fetchedAt": "2024-01-01T00:00:00Z"},
        "bandits": {"response": read("bandit-models-v1.json"), "fetchedAt": "2024-01-01T00:00:00Z"},
    })
    client = Client(Configuration.from_json(wrapper))
    outcomes = run_path(client, UFC / "bandit-tests")
    assert outcomes and all(o.passed for o in outcomes), [o for o in outcomes if not o.passed][:3]


def test_older_bandits_field_gives_the_same_links():
    flags = json.loads(read("bandit-flags-v1.json"))
    del flags["banditReferences"]
    client = Client(Configuration.from_json(flags, read("bandit-models-v1.json")))
    outcomes = run_path(client, UFC / "bandit-tests")
    assert all(o.passed for o in outcomes), [o for o in outcomes if not o.passed][:3]


def test_without_models_bandit_variations_get_no_action():
    client = Client(Configuration.from_json(read("bandit-flags-v1.json")))
    outcomes = run_path(client, UFC / "bandit-tests")
    assert any(not o.passed for o in outcomes)  # the vectors expect actions
    result = client.get_bandit_action("banner_bandit_flag", "alice", {"age": 25}, {"nike": {}}, "default")
    assert result.variation in ("banner_bandit", "control") and result.action is None


def test_cli_conformance_flags_and_bandits():
    ok = invoke(["conformance", str(UFC / "flags-v1.json"), str(UFC / "tests")])
    assert ok.exit_code == 0, ok.text
    assert ok.output.strip().splitlines()[-1] == "225 passed, 0 failed"
    b = invoke(["conformance", str(UFC / "bandit-flags-v1.json"), str(UFC / "bandit-tests"),
                "--bandits", str(UFC / "bandit-models-v1.json")])
    assert b.exit_code == 0, b.text
    n = sum(len(c["subjects"]) for _, c in BANDIT_CASES)
    assert b.output.strip().splitlines()[-1] == f"{n} passed, 0 failed"


def test_cli_conformance_reports_failures(tmp_path):
    case = json.loads((UFC / "tests" / "test-case-regex-flag.json").read_text())
    case["subjects"][0]["assignment"] = "not-what-it-serves"
    (tmp_path / "broken.json").write_text(json.dumps(case))
    result = invoke(["conformance", str(UFC / "flags-v1.json"), str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"{len(case['subjects']) - 1} passed, 1 failed"
    assert "broken.json" in lines[0] and case["subjects"][0]["subjectKey"] in lines[0]


def test_cli_conformance_bad_config_exits_2(tmp_path):
    bad = tmp_path / "flags.json"
    bad.write_text("{not json")
    result = invoke(["conformance", str(bad), str(UFC / "tests")])
    assert result.exit_code == 2 and "not valid JSON" in result.text


@pytest.mark.parametrize(
    "write, expected",
    [
        (None, "no test files (*.json) in the folder"),
        ("{not json", "is not valid JSON"),
        (json.dumps({"flags": {}}), "is not an Eppo test case (that is a flags configuration)"),
        (json.dumps({"flag": "f", "subjects": [{"subjectKey": "a"}]}), "subject 0 has no 'assignment'"),
    ],
)
def test_cli_conformance_refuses_what_is_not_a_test(tmp_path, write, expected):
    """A folder with no tests, or a file that is not one, is an error (exit 2) naming it, never a
    '0 passed, 0 failed' success or a bare KeyError."""
    if write is not None:
        (tmp_path / "case.json").write_text(write)
    result = invoke(["conformance", str(UFC / "flags-v1.json"), str(tmp_path)])
    assert result.exit_code == 2 and expected in result.text, result.text
    missing = invoke(["conformance", str(tmp_path / "missing.json"), str(UFC / "tests")])
    assert missing.exit_code == 2 and "cannot read flags file" in missing.text
