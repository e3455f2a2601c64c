"""Hypothesis strategies drawing random instances of the setting of the paper's Proposition 4.3."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from theory.deep_linear import GlobalLipschitz, random_least_squares, random_spd
from theory.prox import ConvergingMetric, EuclideanMetric, MetricAt, ProxRun, RandomFraction, proximal_gradient


@dataclass(frozen=True)
class ProblemSpec:
    """Everything needed to rebuild one random problem and run Eq. (9) on it."""

    m: int
    n: int
    extra_rows: int
    a_condition: float
    fisher: bool
    metric_condition: float
    metric_log10_scale: float
    perturbed: bool
    lam_fraction: float
    frac_high: float
    frac_low_ratio: float
    start_at_minimizer: bool
    key: int

    def build(self):
        rng = np.random.default_rng(self.key)
        problem = random_least_squares(rng, self.m, self.n, self.extra_rows, self.a_condition)
        if self.fisher:
            scale = 10.0**self.metric_log10_scale
            limit = random_spd(rng, self.m, self.metric_condition, scale)
            pert = random_spd(rng, self.m, 3.0, scale) if self.perturbed else None
            metric = ConvergingMetric(limit, pert, 0.5)
        else:
            metric = EuclideanMetric()
        lim = metric.limit() or MetricAt.of(np.eye(self.m))
        lip = problem.lipschitz
        alpha_max = self.frac_high * lim.lam_min / lip
        W_ls = problem.minimizer()
        s_top = np.linalg.norm(lim.sqrt @ W_ls, 2)
        # Scaled so the largest singular value of the unconstrained solution survives the threshold.
        lam = self.lam_fraction * s_top**2 / (2.0 * alpha_max)
        # A start near the unconstrained solution: from far away most runs collapse to the critical
        # point W = 0, where claim 4 is vacuous.
        spread = np.linalg.norm(W_ls) / np.sqrt(W_ls.size)
        W0 = W_ls if self.start_at_minimizer else W_ls + 0.5 * spread * rng.standard_normal(problem.shape)
        steps = RandomFraction(self.frac_low_ratio * self.frac_high, self.frac_high, self.key)
        return problem, W0, lam, steps, metric

    def run(self, max_iter: int, tie_break: str = "keep") -> ProxRun:
        problem, W0, lam, steps, metric = self.build()
        return proximal_gradient(
            problem, (W0,), lam, steps, GlobalLipschitz(problem.lipschitz), [metric],
            max_iter=max_iter, min_iter=min(60, max_iter) if self.perturbed and self.fisher else 0,
            tie_break=tie_break,
        )


@st.composite
def problem_specs(
    draw,
    max_dim: int = 5,
    max_a_condition: float = 3.0,
    max_metric_condition: float = 10.0,
    fisher: bool | None = None,
    max_frac: float = 1.0,
    min_frac_low_ratio: float = 0.3,
) -> ProblemSpec:
    """Random problems; ``max_frac = 1`` includes the boundary ``alpha_n = sigma_n / L`` of the printed condition."""
    is_fisher = draw(st.booleans()) if fisher is None else fisher
    frac_high = draw(st.one_of(st.just(max_frac), st.floats(0.2, max_frac)))
    return ProblemSpec(
        m=draw(st.integers(1, max_dim)),
        n=draw(st.integers(1, max_dim)),
        extra_rows=draw(st.integers(0, 3)),
        a_condition=draw(st.floats(1.0, max_a_condition)),
        fisher=is_fisher,
        metric_condition=draw(st.floats(1.0, max_metric_condition)),
        metric_log10_scale=draw(st.floats(-3.0, 3.0)),
        perturbed=draw(st.booleans()),
        lam_fraction=draw(st.floats(0.01, 0.9)),
        frac_high=frac_high,
        frac_low_ratio=draw(st.floats(min_frac_low_ratio, 1.0)),
        start_at_minimizer=draw(st.booleans()),
        key=draw(st.integers(0, 2**16)),
    )


def theory_settings(max_examples: int):
    """The ``theory`` profile (registered in this folder's conftest) with a per-test example count."""
    from hypothesis import settings

    return settings(parent=settings.get_profile("theory"), max_examples=max_examples)


@dataclass(frozen=True)
class OIALRSpec:
    """A random least-squares problem and OIALR settings (Appendix B.1.1 of the paper)."""

    m: int
    n: int
    extra_rows: int
    a_condition: float
    use_beta: bool
    beta: float
    lam_fraction: float
    inner: str
    outer_steps: int
    key: int

    def run(self):
        from theory.prox import oialr

        rng = np.random.default_rng(self.key)
        problem = random_least_squares(rng, self.m, self.n, self.extra_rows, self.a_condition, noise=0.3)
        W_ls = problem.minimizer()
        spread = np.linalg.norm(W_ls) / np.sqrt(W_ls.size)
        W0 = W_ls + 0.5 * spread * rng.standard_normal(problem.shape)
        if self.use_beta:
            return oialr(problem, W0, self.outer_steps, beta=self.beta, inner=self.inner)
        s_top = np.linalg.norm(W0, 2)
        return oialr(problem, W0, self.outer_steps, lam=self.lam_fraction * s_top**2 / 2.0, inner=self.inner)


@st.composite
def oialr_specs(draw, inner: str | None = None) -> OIALRSpec:
    return OIALRSpec(
        m=draw(st.integers(1, 6)),
        n=draw(st.integers(1, 6)),
        extra_rows=draw(st.integers(0, 3)),
        a_condition=draw(st.floats(1.0, 10.0)),
        use_beta=draw(st.booleans()),
        beta=draw(st.floats(0.01, 0.9)),
        lam_fraction=draw(st.floats(0.001, 0.9)),
        inner=draw(st.sampled_from(["exact", "gradient_step"])) if inner is None else inner,
        outer_steps=draw(st.integers(1, 6)),
        key=draw(st.integers(0, 2**16)),
    )
