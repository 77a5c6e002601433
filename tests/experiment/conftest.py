import pytest


class FakeRule:
    """A stand-in for sortition.rules.Rule in tests that only need its flag JSON."""

    def __init__(self, conditions):
        self.conditions = conditions

    def to_json(self):
        return {"conditions": [dict(attribute=a, operator=o, value=v) for a, o, v in self.conditions]}

    def describe(self):
        return " AND ".join(f"{a} {o} {v}" for a, o, v in self.conditions)


@pytest.fixture
def fake_rule():
    return FakeRule
