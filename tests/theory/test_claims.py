"""Property tests of the paper's Proposition 4.3 (and the OIALR bound of Appendix B.1.1), claim by claim.

Each claim is tested *as printed* on random problems drawn by hypothesis (shapes, conditioning of
``A``, lambda, step sizes anywhere in ``[alpha_min, sigma_n / L]`` including the boundary, random
positive-definite Fisher metrics with eigenvalues spanning ``1e-7 .. 1e3``). Claims found false
keep a test pinning the counterexample (the minimal one hypothesis found, stored explicitly), and
their corrected statements are tested with hypothesis too.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import assume, example, find, given, strategies as st

from tests.theory.rounding import EPS, factorization_slack, least_squares_descent_slack
from tests.theory.strategies import OIALRSpec, ProblemSpec, oialr_specs, problem_specs, theory_settings
from theory.claims import (
    boundary_step_counterexample,
    claim1_nonincreasing,
    claim2_finite_length,
    claim3_critical_limit,
    claim4_consequence_corrected,
    claim4_consequence_printed,
    claim4_metric_bound,
    claim4_metric_bound_per_step,
    claim_table,
    large_step_counterexample,
    oialr_gradient_step_descent,
    oialr_jump_bound,
    oialr_strict_counterexample,
    printed_consequence_counterexample,
    step_size_condition,
    sufficient_decrease,
    wrong_modulus_counterexample,
)
from theory.deep_linear import Backtracking, GlobalLipschitz, LeastSquares, random_deep_linear, random_orthogonal
from theory.prox import (DESCENT_GAP_RTOL, ConstantFraction, ConvergingMetric, FixedStep, RandomFraction,
                         proximal_gradient)

# Converging runs: metric condition <= 10 and kappa(A) <= 3 keep runs to a few thousand steps.
CONVERGING = problem_specs()
# Per-step properties need no convergence: much wider conditioning, short runs.
WIDE = problem_specs(max_dim=6, max_a_condition=10.0, max_metric_condition=1e4, min_frac_low_ratio=0.05)
LONG, SHORT = 20000, 40

# The minimal counterexamples hypothesis found (see the tests that search for them below).
MINIMAL_CONSEQUENCE = ProblemSpec(
    m=1, n=1, extra_rows=0, a_condition=1.0, fisher=True, metric_condition=1.0, metric_log10_scale=1.0,
    perturbed=False, lam_fraction=0.5, frac_high=1.0, frac_low_ratio=1.0, start_at_minimizer=False, key=0,
)
MINIMAL_LARGE_STEP = ProblemSpec(
    m=2, n=2, extra_rows=0, a_condition=1.0, fisher=False, metric_condition=1.0, metric_log10_scale=0.0,
    perturbed=False, lam_fraction=0.5, frac_high=1.5, frac_low_ratio=1.0, start_at_minimizer=False, key=0,
)
MINIMAL_OIALR = OIALRSpec(
    m=1, n=1, extra_rows=0, a_condition=1.0, use_beta=False, beta=0.5, lam_fraction=0.5, inner="exact",
    outer_steps=1, key=0,
)


# --------------------------------------------------------------------------------------------
# Claim 1: (L + lambda rank)(W_n) non-increasing and convergent
# --------------------------------------------------------------------------------------------


@theory_settings(300)
@given(WIDE)
def test_claim1_nonincreasing_as_printed(spec: ProblemSpec) -> None:
    run = spec.run(SHORT)
    assert step_size_condition(run).holds
    check = claim1_nonincreasing(run)
    assert check.holds, check.detail


@theory_settings(300)
@given(WIDE)
def test_sufficient_decrease_inequality_of_the_proof(spec: ProblemSpec) -> None:
    run = spec.run(SHORT)
    # Exact L_gradL: the descent lemma is never violated beyond the rounding of its four cancelling terms.
    problem = spec.build()[0]
    for n in range(run.n_steps):
        W, W_next = run.iterates[n][0], run.iterates[n + 1][0]
        slack = least_squares_descent_slack(problem, W, W_next - W, run.lipschitz[n])
        assert run.descent_gap[n] <= slack, (n, run.descent_gap[n], slack)
    check = sufficient_decrease(run)
    assert check.holds, check.detail


@theory_settings(60)
@given(
    d=st.integers(2, 4),
    depth=st.integers(2, 3),
    lam=st.floats(1e-3, 0.5),
    fraction=st.floats(0.2, 1.0),
    key=st.integers(0, 2**16),
)
def test_claim1_on_deep_linear_with_certified_smoothness(d: int, depth: int, lam: float, fraction: float,
                                                         key: int) -> None:
    rng = np.random.default_rng(key)
    net, _ = random_deep_linear(rng, d, depth, 30, min(2, d), 10.0, 0.3, 1e-3)
    init = tuple(random_orthogonal(rng, d) for _ in range(depth))
    run = proximal_gradient(net, init, lam, ConstantFraction(fraction), Backtracking(1.0), max_iter=60)
    # Backtracking certifies the descent lemma at every accepted step (its own acceptance rule and constant) ...
    assert np.all(run.descent_gap <= DESCENT_GAP_RTOL * np.maximum(1.0, np.abs(run.loss[:-1])))
    # ... which is all the proof needs for the claim with L_n in place of L_gradL.
    assert step_size_condition(run).holds
    check = claim1_nonincreasing(run)
    assert check.holds, check.detail
    per_step = claim4_metric_bound_per_step(run)
    assert per_step.holds, per_step.detail


def test_step_size_condition_is_not_decorative_minimal() -> None:
    """alpha_n = 1.5 sigma_n / L (plain gradient descent would still descend) breaks monotonicity."""
    run = MINIMAL_LARGE_STEP.run(SHORT)
    assert not step_size_condition(run).holds
    check = claim1_nonincreasing(run)
    assert not check.holds
    assert check.lhs > check.rhs + 0.05


def test_step_size_counterexamples_scalar_and_wrong_modulus() -> None:
    big = large_step_counterexample()
    np.testing.assert_allclose(big.objective[:2], [0.5, 0.625])
    assert not claim1_nonincreasing(big).holds
    wrong = wrong_modulus_counterexample()
    # sigma_n must be lambda_min(I_n): the step lambda_max(I)/L makes the first row diverge.
    assert wrong.sigma[0] == 1.0 and wrong.alpha[0] == 100.0
    assert not claim1_nonincreasing(wrong).holds
    assert wrong.objective[-1] > 1e6 * wrong.objective[0]


def test_hypothesis_finds_a_step_size_violation() -> None:
    found = find(
        problem_specs(max_frac=1.5),
        lambda s: s.frac_high > 1.0 and not claim1_nonincreasing(s.run(SHORT)).holds,
        settings=theory_settings(2000),
    )
    # Shrinking lands on (at most) the stored 2x2 example; exact equality would pin a hypothesis version.
    assert found.m * found.n <= MINIMAL_LARGE_STEP.m * MINIMAL_LARGE_STEP.n
    assert 1.0 < found.frac_high <= 1.5
    assert not claim1_nonincreasing(found.run(SHORT)).holds


# --------------------------------------------------------------------------------------------
# Claims 2 and 3: finite length, convergence to a critical point
# --------------------------------------------------------------------------------------------


@theory_settings(400)
@given(CONVERGING)
def test_claims_2_and_3_on_generic_problems(spec: ProblemSpec) -> None:
    run = spec.run(LONG)
    assert step_size_condition(run).holds
    assert run.converged
    c1 = claim1_nonincreasing(run)
    assert c1.holds, c1.detail
    c2 = claim2_finite_length(run)
    assert c2.holds, c2.detail
    c3 = claim3_critical_limit(run)
    assert c3.holds, c3.detail


def test_claims_2_and_3_fail_at_the_step_size_boundary() -> None:
    """alpha_n = sigma_n / L is allowed by the printed condition; a tie lets W_n alternate forever."""
    run = boundary_step_counterexample(steps=40)
    assert step_size_condition(run).holds
    assert run.alpha.max() * run.lipschitz.max() / run.sigma.min() == 1.0
    assert claim1_nonincreasing(run).holds  # Phi is constant: claim 1 survives
    values = [float(W[0][0, 0]) for W in run.iterates]
    assert values[:5] == [0.0, 2.0, 0.0, 2.0, 0.0]
    np.testing.assert_allclose(run.path_length[-1], 2.0 * run.n_steps)
    assert not claim2_finite_length(run).holds
    assert not claim3_critical_limit(run).holds


@theory_settings(200)
@given(
    a=st.floats(0.2, 5.0),
    b=st.floats(0.2, 5.0),
    delta=st.floats(0.01, 0.9),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_corrected_claims_2_and_3_survive_adversarial_ties(a: float, b: float, delta: float, sign: float) -> None:
    """With alpha_n <= (1 - delta) sigma_n / L, even an adversarial choice at an exact tie converges."""
    problem = LeastSquares(np.array([[sign * a]]), np.array([[b]]))
    L = problem.lipschitz
    alpha = (1.0 - delta) / L
    # lambda puts the first step from w_0 = 0, y = alpha a b, exactly on the threshold sqrt(2 alpha lambda).
    lam = (alpha * a * b) ** 2 / (2.0 * alpha)
    run = proximal_gradient(
        problem, (np.zeros((1, 1)),), lam, ConstantFraction(1.0 - delta), GlobalLipschitz(L),
        max_iter=LONG, tie_break="adversarial",
    )
    assert run.ties[0] == 1
    assert claim2_finite_length(run).holds
    assert claim3_critical_limit(run).holds


@theory_settings(300)
@given(problem_specs(max_frac=0.95))
def test_corrected_claims_2_and_3_with_strict_margin(spec: ProblemSpec) -> None:
    run = spec.run(LONG, tie_break="adversarial")
    # alpha = (f sigma) / L with f <= 0.95, then (alpha L) / sigma: four roundings of eps/2 each (margin 4).
    assert (run.alpha * run.lipschitz / run.sigma).max() <= 0.95 * (1.0 + 8.0 * EPS)
    assert claim2_finite_length(run).holds
    assert claim3_critical_limit(run).holds


def test_claim2_predicate_rejects_slowly_decaying_paths() -> None:
    """The finite-length predicate must not accept increments decaying like 1/n."""
    run = boundary_step_counterexample(delta=0.5)
    harmonic = 1.0 / np.arange(1, 2001)
    run.step_norm = harmonic
    run.converged = True
    run.iterates = run.iterates[-1:]
    assert not claim2_finite_length(run).holds


# --------------------------------------------------------------------------------------------
# Claim 4: singular values of the limit
# --------------------------------------------------------------------------------------------


@theory_settings(300)
@given(WIDE)
def test_claim4_threshold_bounds_each_step_in_the_metric_of_that_step(spec: ProblemSpec) -> None:
    run = spec.run(SHORT)
    check = claim4_metric_bound_per_step(run)
    assert check.holds, check.detail


@theory_settings(300)
@given(CONVERGING)
@example(MINIMAL_CONSEQUENCE)
def test_claim4_first_part_as_printed_and_sharp(spec: ProblemSpec) -> None:
    run = spec.run(LONG)
    assert run.converged
    printed = claim4_metric_bound(run, factor=1.0)
    assert printed.holds, printed.detail
    sharp = claim4_metric_bound(run, factor=2.0)
    assert sharp.holds, sharp.detail


def test_claim4_sharp_bound_is_attained() -> None:
    """The factor 2 cannot be improved: at a tie W* sits exactly on sqrt(2 alpha lambda)."""
    problem = LeastSquares(np.array([[1.0]]), np.array([[2.0]]))
    run = proximal_gradient(problem, (np.array([[2.0]]),), 2.0, FixedStep(1.0), GlobalLipschitz(1.0), max_iter=5)
    check = claim4_metric_bound(run, factor=2.0)
    assert check.holds and check.lhs == check.rhs == 2.0
    assert not claim4_metric_bound(run, factor=2.0 * (1 + 1e-6)).holds


def test_claim4_consequence_as_printed_is_false_minimal() -> None:
    """Minimal counterexample found by hypothesis: m = n = p = 1, I = 10, alpha = sigma / L = 10."""
    problem, W0, lam, _, metric = MINIMAL_CONSEQUENCE.build()
    np.testing.assert_allclose(problem.A, [[-1.0]])
    np.testing.assert_allclose(problem.B, [[-1.5535669373161112]])
    np.testing.assert_allclose(metric.limit().matrix, [[10.0]])
    np.testing.assert_allclose(lam, 0.6033925571804406)
    run = MINIMAL_CONSEQUENCE.run(LONG)
    np.testing.assert_allclose(run.alpha, 10.0)
    assert step_size_condition(run).holds
    # W* = B / A: alpha A^2 / I = 1, so one step of w -> I^{-1/2}(I^{1/2} w - alpha I^{-1/2} A (A w - B)) lands
    # on it; what is left is that step's rounding, about ten operations of eps/2 relative to |w| (margin 4).
    np.testing.assert_allclose(run.final[0], problem.B / problem.A, rtol=20.0 * EPS, atol=0)
    printed = claim4_consequence_printed(run)
    assert not printed.holds
    np.testing.assert_allclose(printed.rhs, np.sqrt(10.0 * 10.0 * lam))  # 7.77 > 1.55
    assert claim4_consequence_corrected(run).holds


def test_claim4_consequence_hand_counterexample() -> None:
    run = printed_consequence_counterexample()
    printed = claim4_consequence_printed(run)
    assert not printed.holds and printed.lhs == 1.0 and printed.rhs == 2.0
    corrected = claim4_consequence_corrected(run)
    assert corrected.holds
    np.testing.assert_allclose(corrected.rhs, np.sqrt(0.5))


def test_hypothesis_finds_the_printed_consequence_false() -> None:
    found = find(
        problem_specs(fisher=True),
        lambda s: not claim4_consequence_printed(s.run(LONG)).holds,
        settings=theory_settings(2000),
    )
    assert (found.m, found.n) == (1, 1)
    run = found.run(LONG)
    assert not claim4_consequence_printed(run).holds
    assert claim4_consequence_corrected(run).holds
    # Only a metric with sigma_max(I) > 1 can break it (otherwise the corrected bound implies the printed one).
    assert run.limit_metrics[0].lam_max > 1.0


@theory_settings(400)
@given(CONVERGING)
def test_claim4_consequence_corrected(spec: ProblemSpec) -> None:
    run = spec.run(LONG)
    assert run.converged
    check = claim4_consequence_corrected(run)
    assert check.holds, check.detail


@theory_settings(100)
@given(spec=problem_specs(fisher=True, max_metric_condition=1e4), key=st.integers(0, 2**16))
def test_singular_value_inequality_behind_the_correction(spec: ProblemSpec, key: int) -> None:
    """sigma_k(I^{-1/2} Z) >= sigma_min(I^{-1/2}) sigma_k(Z) with sigma_min(I^{-1/2}) = lambda_max(I)^{-1/2}."""
    _, _, _, _, metric = spec.build()
    lim = metric.limit()
    rng = np.random.default_rng(key)
    Z = rng.standard_normal((spec.m, spec.n))
    lhs = np.linalg.svd(lim.inv_sqrt @ Z, compute_uv=False)
    rhs = np.linalg.svd(Z, compute_uv=False) / np.sqrt(lim.lam_max)
    # Absolute (Weyl) errors of both SVDs and the product, size eps |I^{-1/2}| |Z|; this also covers
    # sigma_min(I^{-1/2}) vs lambda_max^{-1/2}, equal up to m eps |I^{-1/2}| for the eigh-built root.
    slack = factorization_slack(2 * max(spec.m, spec.n), np.linalg.norm(lim.inv_sqrt, 2) * np.linalg.norm(Z, 2))
    assert np.all(lhs >= rhs - slack)


# --------------------------------------------------------------------------------------------
# OIALR loss-jump bound (Appendix B.1.1)
# --------------------------------------------------------------------------------------------


@theory_settings(200)
@given(oialr_specs(inner="exact"))
def test_oialr_jump_bound_corrected(spec: OIALRSpec) -> None:
    run = spec.run()
    check = oialr_jump_bound(run, strict=False)
    assert check.holds, check.detail
    # The sharper statement: every kept singular value exceeds sqrt(2 lambda_k).
    kept = ~np.isnan(run.sigma_min_after)
    assert np.all(2.0 * run.lam[kept] < run.sigma_min_after[kept] ** 2)


@theory_settings(200)
@given(oialr_specs(inner="exact").map(lambda s: replace(s, outer_steps=1)))
def test_oialr_jump_bound_printed_when_something_is_cut(spec: OIALRSpec) -> None:
    run = spec.run()
    assume(run.rank_star[0] > run.rank_after[0])
    check = oialr_jump_bound(run, strict=True)
    assert check.holds, check.detail


@theory_settings(200)
@given(oialr_specs(inner="gradient_step"))
def test_oialr_gradient_step_descent_and_general_jump(spec: OIALRSpec) -> None:
    run = spec.run()
    check = oialr_gradient_step_descent(run)
    assert check.holds, check.detail
    general = oialr_jump_bound(run, strict=False)
    assert general.holds, general.detail


def test_oialr_printed_strict_inequality_is_false_minimal() -> None:
    run = MINIMAL_OIALR.run()
    assert run.rank_star[0] == run.rank_after[0] == 1
    assert not oialr_jump_bound(run, strict=True).holds
    assert oialr_jump_bound(run, strict=False).holds
    hand = oialr_strict_counterexample()
    assert not oialr_jump_bound(hand, strict=True).holds
    assert oialr_jump_bound(hand, strict=False).holds


def test_hypothesis_finds_the_oialr_strict_counterexample() -> None:
    found = find(
        oialr_specs(inner="exact"),
        lambda s: not oialr_jump_bound(s.run(), strict=True).holds,
        settings=theory_settings(2000),
    )
    assert (found.m, found.n, found.outer_steps) == (1, 1, 1)
    run = found.run()
    assert run.rank_star[0] == run.rank_after[0]  # nothing cut: both sides are 0


# --------------------------------------------------------------------------------------------
# The table the notebook writes
# --------------------------------------------------------------------------------------------


def test_claim_table_verdicts() -> None:
    euclid = ProblemSpec(
        m=4, n=3, extra_rows=2, a_condition=2.0, fisher=False, metric_condition=1.0, metric_log10_scale=0.0,
        perturbed=False, lam_fraction=0.2, frac_high=1.0, frac_low_ratio=0.5, start_at_minimizer=False, key=3,
    ).run(LONG)
    fisher = ProblemSpec(
        m=4, n=3, extra_rows=2, a_condition=2.0, fisher=True, metric_condition=5.0, metric_log10_scale=0.0,
        perturbed=True, lam_fraction=0.2, frac_high=1.0, frac_low_ratio=0.5, start_at_minimizer=False, key=3,
    ).run(LONG)
    rows = claim_table([euclid, fisher], [MINIMAL_OIALR.run()])
    verdicts = {row["claim"].split(".")[0]: row["verdict"] for row in rows}
    assert verdicts["1"] == "holds"
    assert verdicts["2"].startswith("fails") and verdicts["2"].endswith("corrected form holds")
    assert verdicts["3"].startswith("fails") and verdicts["3"].endswith("corrected form holds")
    assert verdicts["4a"] == "holds"
    assert verdicts["4b"] == "fails (counterexample); corrected form holds"
    assert verdicts["B"] == "fails (counterexample); corrected form holds"


def test_random_fraction_respects_its_range() -> None:
    steps = RandomFraction(0.3, 0.9, 7)
    alphas = np.array([steps(n, 2.0, 4.0) for n in range(200)])
    assert alphas.min() >= 0.3 * 0.5 and alphas.max() <= 0.9 * 0.5
    assert alphas.std() > 0.01
    assert steps(5, 2.0, 4.0) == alphas[5]
    metric = ConvergingMetric(np.eye(2) * 3.0, np.eye(2), 0.5)
    assert metric.at(0).lam_min == 4.0 and metric.at(200).lam_min == 3.0
