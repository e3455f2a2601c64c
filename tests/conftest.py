"""Shared test configuration: one fixed hypothesis profile (derandomized, so CI is reproducible)."""
import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("ci")

# Two cores: with pytest-xdist each worker gets one thread (more only adds contention), otherwise two.
# OPFACT_TORCH_THREADS overrides it (tests/kernel_variation.py runs the numeric tests on one thread).
_threads = os.environ.get("OPFACT_TORCH_THREADS")
torch.set_num_threads(int(_threads) if _threads else
                      1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))
