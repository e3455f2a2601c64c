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

# Two cores: tests share them with the rest of the machine; more threads only add contention.
torch.set_num_threads(min(2, torch.get_num_threads()))
