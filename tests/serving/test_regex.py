"""MATCHES / NOT_MATCHES run on RE2: linear time, and the same answers as ``re`` where both apply."""

import json
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.serving.conditions import compile_condition
from sortition.serving.regex import PatternError, compile_search

from ufc_cases import UFC


def _conformance_patterns() -> set[str]:
    found: set[str] = set()

    def walk(o):
        if isinstance(o, dict):
            if o.get("operator") in ("MATCHES", "NOT_MATCHES"):
                found.add(o["value"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    for name in ("flags-v1.json", "bandit-flags-v1.json"):
        walk(json.loads((UFC / name).read_text()))
    return found


def _conformance_texts() -> set[str]:
    texts = {"", "a@example.com", "x@test.com", "US", "true", "zach", "someone@mycompany.com", "example.com"}
    for path in sorted((UFC / "tests").glob("*.json")):
        for s in json.loads(path.read_text()).get("subjects", []):
            texts.add(s["subjectKey"])
            texts.update(v for v in (s.get("subjectAttributes") or {}).values() if isinstance(v, str))
    return texts


def test_conformance_patterns_agree_with_re():
    patterns = _conformance_patterns()
    assert len(patterns) >= 5  # the files do use regexes: this test is not vacuous
    texts = _conformance_texts()
    for p in patterns:
        search = compile_search(p)
        for t in texts:
            assert search(t) == (re.search(p, t) is not None), (p, t)


_ATOMS = st.sampled_from(["a", "b", "c", "@", r"\.", ".", "[ab]", "[^a]", "[a-c]", r"\d", "x"])
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{1,3}", "{2}", "*?", "+?"])


def _pattern() -> st.SearchStrategy[str]:
    piece = st.builds(lambda a, q: a + q, _ATOMS, _QUANTIFIERS)
    base = st.lists(piece, min_size=1, max_size=4).map("".join)

    def extend(inner):
        group = st.builds(lambda x, q: f"({x}){q}", inner, _QUANTIFIERS)
        alternation = st.builds(lambda x, y: f"{x}|{y}", inner, inner)
        concat = st.lists(inner, min_size=1, max_size=3).map("".join)
        return group | alternation | concat

    anchored = st.recursive(base, extend, max_leaves=6)
    return st.builds(lambda start, body, end: start + body + end,
                     st.sampled_from(["", "^", ".*"]), anchored, st.sampled_from(["", "$"]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(pattern=_pattern(), texts=st.lists(st.text(alphabet="abc@.x19", max_size=12), min_size=1, max_size=6))
def test_random_safe_patterns_agree_with_re(pattern, texts):
    search = compile_search(pattern)
    for t in texts:
        assert search(t) == (re.search(pattern, t) is not None), (pattern, t)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(literal=st.text(alphabet="ab@.-$\\é", max_size=5), start=st.sampled_from(["", "^", ".*"]),
       end=st.sampled_from(["", "$"]), texts=st.lists(st.text(alphabet="ab@.-$\\é\n", max_size=8), max_size=6))
def test_literal_patterns_answered_by_str_methods_agree_with_re(literal, start, end, texts):
    body = start + "".join("\\" + ch if ch in ".$\\" else ch for ch in literal)
    pattern = body + end
    search = compile_search(pattern)
    python = body + ("\\Z" if end else "")  # RE2's $ is re's \Z (the very end)
    for t in texts + [literal, literal + "\n"]:
        assert search(t) == (re.search(python, t) is not None), (pattern, t)


_FIXED = st.sampled_from(["a", "b", "@", r"\.", ".", "[ab]", "[^a]", "[a-c]", r"\d", r"\w", r"\s", r"\b", "é",
                          "(a)", "(ab)", "^", "$", "[]a]", "[$]", r"\$"])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(pattern=st.lists(_FIXED, min_size=1, max_size=6).map("".join),
       texts=st.lists(st.text(alphabet="ab@.é1 _\n$", max_size=10), min_size=1, max_size=6))
def test_fixed_width_patterns_on_re_agree_with_re2_itself(pattern, texts):
    """Patterns without quantifiers or alternation run on Python's re: with RE2's meanings."""
    import re2

    options = re2.Options()
    options.log_errors = False
    try:
        reference = re2.compile(pattern, options)
    except re2.error:
        return
    search = compile_search(pattern)
    for t in texts:
        assert search(t) == (reference.search(t) is not None), (pattern, t)


def test_pathological_patterns_run_in_linear_time():
    cases = [
        (r"^(a+)+$", "a" * 10_000 + "!"),
        (r"(x+x+)+y", "x" * 10_000),
        (r"^(\w+\s?)*$", "word " * 2_000 + "!"),
        (r".*.*.*=.*x", "=" * 10_000),
    ]
    for operator in ("MATCHES", "NOT_MATCHES"):
        for pattern, text in cases:
            predicate = compile_condition(operator, pattern)
            t0 = time.perf_counter()
            result = predicate(text)
            elapsed = time.perf_counter() - t0
            assert result is (operator == "NOT_MATCHES"), (pattern, operator)
            assert elapsed < 1.0, f"{pattern!r} on {len(text)} chars took {elapsed:.3f} s"


def test_patterns_re2_cannot_compile_are_false_for_everyone():
    for pattern in [r"(a)\1", r"(?=a)a", r"a(?!b)", r"abc\Z", "a{1001}", "["]:
        try:
            compile_search(pattern)
        except PatternError as exc:
            assert str(exc)  # says why
        else:
            raise AssertionError(f"{pattern!r} should not compile")
        assert not compile_condition("MATCHES", pattern)("aaa")
        assert not compile_condition("NOT_MATCHES", pattern)("aaa")


def test_unicode_surrogates_and_numbers_never_raise():
    assert compile_condition("MATCHES", "é$")("café")
    assert not compile_condition("MATCHES", "^.$")("\ud800x")
    assert compile_condition("MATCHES", "x")("\ud800x")
    assert compile_condition("MATCHES", "^1.5$")(1.5)
    assert compile_condition("MATCHES", "^true$")(True)
    assert not compile_condition("MATCHES", "x")(None)
    assert not compile_condition("NOT_MATCHES", "x")(None)
    # RE2's $ is the end of the text (as in Eppo's Rust core), not "before a final newline"
    assert not compile_condition("MATCHES", "abc$")("abc\n")
