"""Hypothesis profile of the theory suite: derandomized and without deadlines, so CI runs are reproducible.

Registered under the name ``theory`` and applied per test with ``settings(parent=THEORY, ...)``
(it does not replace the suite-wide profile loaded by ``tests/conftest.py``).
"""
from hypothesis import HealthCheck, settings

settings.register_profile(
    "theory",
    derandomize=True,
    deadline=None,
    max_examples=100,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
