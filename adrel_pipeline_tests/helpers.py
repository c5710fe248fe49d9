"""Assertions shared by the rule tests."""


def assert_fails(outcome, *fragments):
    assert outcome.passed is False, outcome.description
    for fragment in fragments:
        assert fragment in outcome.description, (fragment, outcome.description)
    assert "\n" not in outcome.description


def assert_passes(outcome):
    assert outcome.passed is True, outcome.description
    assert "\n" not in outcome.description


def assert_scalar_metadata(outcome):
    assert all(isinstance(k, str) and isinstance(x, (int, float, str)) and not isinstance(x, bool)
               for k, x in outcome.metadata.items()), outcome.metadata
