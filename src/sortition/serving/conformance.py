"""Run Eppo-format test files (flag tests and bandit tests, recognised by shape)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sortition.serving.attributes import Attributes
from sortition.serving.client import Client
from sortition.userfiles import read_json


@dataclass(frozen=True, slots=True)
class Outcome:
    file: str
    subject: str
    passed: bool
    message: str = ""


def test_files(path: str | Path) -> list[Path]:
    """The test files at ``path``: the file itself, or a folder's ``*.json`` files (FileNotFoundError if
    none: a run of no tests would pass whatever the evaluator did)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".json")
        if not files:
            raise FileNotFoundError(f"no test files (*.json) in the folder {path}")
        return files
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"no test file or folder at {path}")


def read_case(file: Path) -> dict[str, Any]:
    """One test file's case, checked for the fields ``run_case`` reads (ValueError naming the file,
    and the subject, that lacks one)."""
    case = read_json(file, "test file")
    if not isinstance(case, dict) or "flag" not in case or not isinstance(case.get("subjects"), list):
        hint = " (that is a flags configuration)" if isinstance(case, dict) and "flags" in case else ""
        raise ValueError(
            f"test file {file} is not an Eppo test case{hint}: it needs 'flag' and a 'subjects' list"
        )
    for i, subject in enumerate(case["subjects"]):
        fields = subject if isinstance(subject, dict) else {}
        missing = [k for k in ("subjectKey", "assignment") if k not in fields]
        if missing:
            raise ValueError(f"test file {file}: subject {i} has no {' or '.join(map(repr, missing))}")
    return case


def is_bandit_case(case: dict[str, Any]) -> bool:
    subjects = case.get("subjects") or []
    return "variationType" not in case and any("actions" in s for s in subjects)


def _same(a: Any, b: Any) -> bool:
    """Equal, with bool and number kept apart (JSON's true is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def run_case(client: Client, case: dict[str, Any], name: str, *, details: bool = True,
             skip_detail_fields: tuple[str, ...] = ()) -> Iterator[Outcome]:
    """One outcome per subject of a test file."""
    flag = case["flag"]
    default = case.get("defaultValue")
    if is_bandit_case(case):
        for s in case["subjects"]:
            attrs = s.get("subjectAttributes") or {}
            subject = Attributes(attrs.get("numericAttributes") or {}, attrs.get("categoricalAttributes") or {}) \
                if ("numericAttributes" in attrs or "categoricalAttributes" in attrs) else attrs
            actions = {
                a["actionKey"]: Attributes(a.get("numericAttributes") or {}, a.get("categoricalAttributes") or {})
                for a in s.get("actions") or []
            }
            got = client.get_bandit_action(flag, s["subjectKey"], subject, actions, default)
            want = s["assignment"]
            ok = got.variation == want["variation"] and got.action == want["action"]
            yield Outcome(name, s["subjectKey"], ok, "" if ok else
                          f"expected variation={want['variation']!r} action={want['action']!r}, "
                          f"got variation={got.variation!r} action={got.action!r}")
        return
    vtype = case.get("variationType")
    for s in case["subjects"]:
        got = client.get_assignment_details(flag, s["subjectKey"], s.get("subjectAttributes") or {}, default,
                                            variation_type=vtype)
        problems = []
        if not _same(got.value, s["assignment"]):
            problems.append(f"assignment: expected {s['assignment']!r}, got {got.value!r}")
        want = s.get("evaluationDetails")
        if details and want is not None:
            have = got.to_dict()
            for k, v in want.items():
                if k in skip_detail_fields:
                    continue
                if not _same(have.get(k), v):
                    problems.append(f"{k}: expected {json.dumps(v)}, got {json.dumps(have.get(k))}")
        yield Outcome(name, s["subjectKey"], not problems, "; ".join(problems))


def run_path(client: Client, tests_path: str | Path, **kwargs: Any) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for file in test_files(tests_path):
        case = read_case(file)
        outcomes.extend(run_case(client, case, file.name, **kwargs))
    return outcomes
