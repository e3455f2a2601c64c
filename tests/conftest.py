"""Shared test configuration: one fixed hypothesis profile (derandomized, so CI is reproducible), the ``cuda``
marker and the ``accel_device`` fixture."""
import os

import pytest
import torch

try:
    from hypothesis import HealthCheck, settings
except ImportError:     # a GPU machine with its own Python runs only tests/test_cuda.py, which needs no hypothesis
    settings = None

if settings is not None:
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


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: also runs on a GPU (tests/test_cuda.py, bench/gpu_check.py); skipped "
                                       "without one unless OPFACT_CUDA_TESTS_DEVICE names a device")


@pytest.fixture(autouse=True)
def _no_run_cache(monkeypatch):
    """No test inherits a run cache (``OPFACT_RUN_CACHE``) from the shell or from another test: a cached
    finished run would be restored instead of run. Tests of the cache set their own."""
    monkeypatch.delenv("OPFACT_RUN_CACHE", raising=False)


@pytest.fixture
def accel_device():
    """The device the ``cuda`` tests run on: the GPU when there is one; ``OPFACT_CUDA_TESTS_DEVICE`` (say ``cpu``,
    for the dry run of bench/gpu_check.py) overrides it; otherwise the test is skipped with the reason."""
    forced = os.environ.get("OPFACT_CUDA_TESTS_DEVICE")
    if forced:
        return torch.device(forced)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here (set OPFACT_CUDA_TESTS_DEVICE=cpu to run these tests on the CPU)")
    # full float32 on the GPU: TF32 convolutions / matmuls would round far above the tests' float32 bounds
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda")
