"""Tests of the TFP backend: its maths against closed forms and Monte Carlo, and its
steps against each other (statistics add up, the loop is the steps, one trace)."""

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES, blobs
from scipy.special import gammaln, multigammaln

# The backend needs TensorFlow; without it these tests skip rather than error.
tf = pytest.importorskip("tensorflow")
tfp = pytest.importorskip("tensorflow_probability")

from skbayesmix import _tfp_backend as backend  # noqa: E402
from skbayesmix._state import (  # noqa: E402
    COVARIANCE_STRUCTURES as STRUCTURES,
)
from skbayesmix._state import (  # noqa: E402
    Posterior,
    Prior,
    blend_statistics,
    sum_statistics,
)
from skbayesmix._tfp_backend import _loop, _maths, _statistics  # noqa: E402

tfd = tfp.distributions


def _random_spd(rng, n_features, scale=1.0):
    A = rng.randn(n_features, n_features)
    return scale * (A @ A.T / n_features + np.eye(n_features))


def _default_prior(X, covariance_type, n_components):
    psi0 = {
        "full": np.cov(X.T),
        "tied": np.cov(X.T),
        "diag": X.var(axis=0, ddof=1),
        "spherical": X.var(axis=0, ddof=1).mean(),
    }[covariance_type]
    return Prior(1.0 / n_components, 1.0, X.mean(axis=0), float(X.shape[1]), psi0)


def _kwargs(covariance_type, weight_type="dirichlet_process"):
    return dict(
        covariance_type=covariance_type, weight_concentration_prior_type=weight_type
    )


def _posterior_and_elbo(X, resp, prior, covariance_type, weight_type, reg_covar=0.0):
    """The closed-form posterior for `resp`, and the ELBO at (resp, posterior)."""
    kwargs = _kwargs(covariance_type, weight_type)
    statistics = backend.initial_statistics(X, resp, **kwargs)
    posterior = backend.update(prior, statistics, reg_covar, **kwargs)
    return posterior, backend.lower_bound(
        prior, posterior, statistics, reg_covar, **kwargs
    )


def test_wishart_kl_matches_monte_carlo():
    rng = np.random.RandomState(0)
    n_features = 3
    psi_q = np.stack([_random_spd(rng, n_features) for _ in range(2)])
    psi_p = _random_spd(rng, n_features, scale=2.0)
    df_q = np.array([6.5, 9.0])
    df_p = 4.0
    kl = _maths.wishart_kl(
        tf.constant(df_q),
        tf.linalg.cholesky(psi_q),
        tf.constant(df_p, tf.float64),
        tf.linalg.cholesky(psi_p),
    ).numpy()

    q = _maths.wishart(tf.constant(df_q), tf.linalg.cholesky(psi_q))
    p = _maths.wishart(tf.constant(df_p, tf.float64), tf.linalg.cholesky(psi_p)[None])
    samples = q.sample(40000, seed=0)
    log_ratio = (q.log_prob(samples) - p.log_prob(samples)).numpy()  # [s, 2]
    mc = log_ratio.mean(axis=0)
    stderr = log_ratio.std(axis=0) / np.sqrt(log_ratio.shape[0])
    assert np.all(kl > 0)
    np.testing.assert_array_less(np.abs(kl - mc), 5 * stderr + 1e-3)


def test_wishart_kl_is_zero_between_equal_distributions():
    rng = np.random.RandomState(0)
    psi = _random_spd(rng, 4)
    kl = _maths.wishart_kl(
        tf.constant([7.0], tf.float64),
        tf.linalg.cholesky(psi[None]),
        tf.constant(7.0, tf.float64),
        tf.linalg.cholesky(psi),
    )
    np.testing.assert_allclose(kl.numpy(), 0.0, atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_precision_moments_match_monte_carlo(covariance_type):
    rng = np.random.RandomState(0)
    n_features = 3
    nu = np.array([5.0, 8.0])
    psi = {
        "full": np.stack([_random_spd(rng, n_features) for _ in range(2)]),
        "diag": rng.uniform(0.5, 2.0, size=(2, n_features)),
        "spherical": rng.uniform(0.5, 2.0, size=2),
    }[covariance_type]
    structure = STRUCTURES[covariance_type]
    moments = _maths.precision_moments(
        tf.constant(nu), tf.constant(psi), tf.constant(n_features), structure
    )
    if covariance_type == "full":
        precision = _maths.wishart(tf.constant(nu), tf.linalg.cholesky(psi))
        samples = precision.sample(40000, seed=1).numpy()
        log_det = np.linalg.slogdet(samples)[1]
        trace = np.trace(samples, axis1=-2, axis2=-1)
        mean = samples.mean(0)
    else:
        gamma = _maths.precision_gamma(
            tf.constant(nu), tf.constant(psi), float(n_features), structure
        )
        samples = gamma.sample(40000, seed=1).numpy()
        mean = samples.mean(0)
        if covariance_type == "diag":
            log_det, trace = np.log(samples).sum(-1), samples.sum(-1)
        else:
            log_det, trace = n_features * np.log(samples), n_features * samples
    np.testing.assert_allclose(
        moments.expected_log_det.numpy(), log_det.mean(0), atol=0.03
    )
    np.testing.assert_allclose(moments.expected_trace.numpy(), trace.mean(0), rtol=0.02)
    np.testing.assert_allclose(
        moments.expected_precision.numpy(), mean, rtol=0.03, atol=0.02
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_elbo_equals_closed_form_evidence_for_one_component(covariance_type):
    # With one component and a Dirichlet prior the mean-field posterior is exact,
    # so the ELBO must equal the conjugate model's log marginal likelihood.
    rng = np.random.RandomState(0)
    X = rng.randn(50, 3) @ np.array([[1.0, 0.3, 0.0], [0.0, 2.0, 0.5], [0, 0, 0.7]])
    n_samples, n_features = X.shape
    prior = _default_prior(X, covariance_type, 1)
    _, beta0, m0, nu0, psi0 = prior
    posterior, elbo = _posterior_and_elbo(
        X, np.ones((n_samples, 1)), prior, covariance_type, "dirichlet_distribution"
    )
    beta_n = beta0 + n_samples
    xbar = X.mean(axis=0)
    scatter = (X - xbar).T @ (X - xbar)
    shrink = beta0 * n_samples / beta_n
    if covariance_type == "full":
        psi_n = psi0 + scatter + shrink * np.outer(xbar - m0, xbar - m0)
        nu_n = nu0 + n_samples
        log_evidence = (
            -0.5 * n_samples * n_features * np.log(np.pi)
            + multigammaln(0.5 * nu_n, n_features)
            - multigammaln(0.5 * nu0, n_features)
            + 0.5 * nu0 * np.linalg.slogdet(psi0)[1]
            - 0.5 * nu_n * np.linalg.slogdet(psi_n)[1]
            + 0.5 * n_features * np.log(beta0 / beta_n)
        )
    else:
        if covariance_type == "diag":
            a0, b0 = 0.5 * nu0, 0.5 * psi0
            sq = np.diag(scatter) + shrink * (xbar - m0) ** 2
            a_n, b_n = a0 + 0.5 * n_samples, b0 + 0.5 * sq
        else:
            a0, b0 = 0.5 * n_features * nu0, 0.5 * n_features * psi0
            sq = np.trace(scatter) + shrink * np.sum((xbar - m0) ** 2)
            a_n = a0 + 0.5 * n_samples * n_features
            b_n = b0 + 0.5 * sq
        n_gauss = n_samples if covariance_type == "diag" else n_samples * n_features
        log_evidence = np.sum(
            -0.5 * n_gauss * np.log(2 * np.pi)
            + gammaln(a_n)
            - gammaln(a0)
            + a0 * np.log(b0)
            - a_n * np.log(b_n)
            + 0.5
            * (1 if covariance_type == "diag" else n_features)
            * np.log(beta0 / beta_n)
        )
    np.testing.assert_allclose(elbo, log_evidence, rtol=1e-10)


def _log_joint_minus_log_q(X, resp, prior, posterior, covariance_type, weight_type):
    """Monte-Carlo draws of E_q(z)[log p(X, z, theta) - log q(z, theta)].

    q(z) is summed exactly; theta is drawn from q, 4000 times at once.
    """
    n_draws = 4000
    alpha0, beta0, m0, nu0, psi0 = (np.asarray(p, np.float64) for p in prior)
    conc_a, conc_b, beta, means, nu, psi = posterior
    n_components, n_features = means.shape
    stream = tfp.util.SeedStream(0, "elbo")

    def draw(q, p):
        theta = q.sample(n_draws, seed=stream())
        return theta, q.log_prob(theta), p.log_prob(theta)

    if weight_type == "dirichlet_process":
        v, log_q, log_p = draw(tfd.Beta(conc_a, conc_b), tfd.Beta(1.0, alpha0))
        log_q, log_p = tf.reduce_sum(log_q, -1), tf.reduce_sum(log_p, -1)
        log_pi = tf.math.log(v) + tf.math.cumsum(tf.math.log1p(-v), -1, exclusive=True)
    else:
        prior_pi = tfd.Dirichlet(alpha0 * np.ones(n_components))
        pi, log_q, log_p = draw(tfd.Dirichlet(conc_a), prior_pi)
        log_pi = tf.math.log(pi)  # [s, k]

    if covariance_type in ("full", "tied"):
        precision, lq, lp = draw(
            _maths.wishart(nu, tf.linalg.cholesky(psi)),
            _maths.wishart(nu0, tf.linalg.cholesky(psi0)[None]),
        )  # [s, f, d, d]
        precision = tf.broadcast_to(
            precision, [n_draws, n_components, n_features, n_features]
        )
        cov_chol = tf.linalg.cholesky(tf.linalg.inv(precision))
        q_mu = tfd.MultivariateNormalTriL(
            means, cov_chol / np.sqrt(beta)[:, None, None]
        )
        p_mu = tfd.MultivariateNormalTriL(m0, cov_chol / np.sqrt(beta0))
        lik = lambda mu: tfd.MultivariateNormalTriL(mu, cov_chol)  # noqa: E731
    else:
        precision, lq, lp = draw(
            _maths.precision_gamma(
                nu, psi, float(n_features), STRUCTURES[covariance_type]
            ),
            _maths.precision_gamma(
                nu0, psi0, float(n_features), STRUCTURES[covariance_type]
            ),
        )
        if covariance_type == "spherical":
            precision = tf.broadcast_to(
                precision[..., None], [n_draws, n_components, n_features]
            )
        else:
            lq, lp = tf.reduce_sum(lq, -1), tf.reduce_sum(lp, -1)
        std = tf.math.rsqrt(precision)
        q_mu = tfd.MultivariateNormalDiag(means, std / np.sqrt(beta)[:, None])
        p_mu = tfd.MultivariateNormalDiag(m0, std / np.sqrt(beta0))
        lik = lambda mu: tfd.MultivariateNormalDiag(mu, std)  # noqa: E731
    log_q += tf.reduce_sum(lq, -1)
    log_p += tf.reduce_sum(lp, -1)
    mu = q_mu.sample(seed=stream())  # [s, k, d]
    log_q += tf.reduce_sum(q_mu.log_prob(mu), -1)
    log_p += tf.reduce_sum(p_mu.log_prob(mu), -1)
    log_lik = lik(mu).log_prob(X[:, None, None, :])  # [n, s, k]
    log_resp = np.log(np.maximum(resp, 1e-300))[:, None, :]
    expected = tf.reduce_sum(resp[:, None, :] * (log_lik + log_pi - log_resp), [0, 2])
    return (expected + log_p - log_q).numpy()  # [s]


@pytest.mark.parametrize("weight_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_elbo_matches_monte_carlo_estimate(covariance_type, weight_type):
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=15)
    n_components = 3
    resp = rng.dirichlet(np.ones(n_components), size=X.shape[0])
    prior = _default_prior(X, covariance_type, n_components)
    posterior, elbo = _posterior_and_elbo(X, resp, prior, covariance_type, weight_type)
    draws = _log_joint_minus_log_q(
        X, resp, prior, posterior, covariance_type, weight_type
    )
    stderr = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - elbo) < 5 * stderr + 1e-6 * abs(elbo)


@pytest.mark.parametrize("weight_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_variational_posterior_elbo_never_decreases(covariance_type, weight_type):
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=100)
    X = (X - X.mean(0)) / X.std()
    n_components = 8
    resp = rng.dirichlet(np.ones(n_components), size=X.shape[0])
    result = backend.fit_variational_posterior(
        X,
        resp,
        _default_prior(X, covariance_type, n_components),
        reg_covar=1e-6,
        tol=1e-8,
        max_iter=300,
        **_kwargs(covariance_type, weight_type),
    )
    lower_bounds = result["lower_bounds"]
    assert len(lower_bounds) == result["n_iter"] > 10
    # Rounding in float64 only.
    assert np.all(np.diff(lower_bounds) >= -1e-9 * np.abs(lower_bounds[1:]))


def test_fit_variational_posterior_accepts_float32():
    rng = np.random.RandomState(0)
    X = blobs(rng).astype(np.float32)
    resp = np.eye(3, dtype=np.float32)[rng.randint(3, size=X.shape[0])]
    result = backend.fit_variational_posterior(
        X,
        resp,
        _default_prior(X, "full", 3),
        reg_covar=1e-6,
        tol=1e-3,
        max_iter=100,
        **_kwargs("full"),
    )
    # Sums over samples, the posterior and the bound are accumulated in float64;
    # the estimator casts the fitted attributes back to float32.
    assert all(p.dtype == np.float64 for p in result["posterior"])
    assert result["lower_bounds"].dtype == np.float64


def _fitted_posterior(X, covariance_type, weight_type="dirichlet_process", k=3):
    rng = np.random.RandomState(1)
    resp = rng.dirichlet(np.ones(k), size=X.shape[0])
    prior = _default_prior(X, covariance_type, k)
    result = backend.fit_variational_posterior(
        X,
        resp,
        prior,
        reg_covar=1e-6,
        tol=1e-6,
        max_iter=5,
        **_kwargs(covariance_type, weight_type),
    )
    return prior, result["posterior"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_loop_building_the_design_matches_holding_it(
    monkeypatch, covariance_type, dtype
):
    # Large fits build the design per block ('loop_building_design'); small ones
    # hold it ('loop'). The two compiled loops must fit the same way, cold start
    # included, over ragged blocks.
    monkeypatch.setattr(_statistics, "BLOCK_SIZE", 7)
    monkeypatch.setattr(_loop, "_COMPILED", {})
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=20, n_features=3).astype(dtype)
    resp = rng.dirichlet(np.ones(3), size=X.shape[0])
    prior = _default_prior(X, covariance_type, 3)
    kwargs = dict(reg_covar=1e-6, tol=0.0, max_iter=4, **_kwargs(covariance_type))
    held = backend.fit_variational_posterior(X, resp, prior, **kwargs)
    monkeypatch.setattr(_statistics, "HELD_DESIGN_MAX_ELEMENTS", 0)
    built = backend.fit_variational_posterior(X, resp, prior, **kwargs)
    assert {key[0] for key in _loop._COMPILED} == {"loop", "loop_building_design"}
    assert held["n_iter"] == built["n_iter"] == len(held["lower_bounds"]) == 4
    # A held design keeps a float32 copy for the E-step GEMM; built per block, a
    # 'diag' or 'spherical' design is not cast, and its GEMM runs in float64.
    same_gemm = dtype == np.float64 or covariance_type in ("full", "tied")
    rtol, atol = (1e-12, 0.0) if same_gemm else (1e-7, 1e-6)
    np.testing.assert_allclose(built["lower_bounds"], held["lower_bounds"], rtol=rtol)
    for got, want in zip(built["posterior"], held["posterior"]):
        np.testing.assert_allclose(got, want, rtol=100 * rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunk_statistics_add_up_over_chunks(monkeypatch, covariance_type, dtype):
    # Ragged blocks of 7 rows inside each chunk, with sample weights: statistics
    # of disjoint chunks must sum to those of their union.
    monkeypatch.setattr(_statistics, "BLOCK_SIZE", 7)
    monkeypatch.setattr(_loop, "_COMPILED", {})
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=20, n_features=3)
    weights = rng.uniform(0.0, 2.0, size=X.shape[0])
    _, posterior = _fitted_posterior(X, covariance_type)
    X = X.astype(dtype)

    def stats(rows):
        return backend.chunk_statistics(
            X[rows],
            posterior,
            1e-6,
            sample_weight=weights[rows],
            **_kwargs(covariance_type),
        )

    whole = stats(slice(None))
    parts = sum_statistics(
        [stats(slice(0, 23)), stats(slice(23, 41)), stats(slice(41, None))]
    )
    # float32 blocks sum in float32 (then in float64 across blocks), and the
    # chunks move where the blocks end.
    # An entry that cancels is off by float32 rounding of its terms, hence the
    # tolerance relative to the largest entry.
    rtol = 1e-10 if dtype == np.float64 else 1e-6
    for got, want in zip(parts, whole):
        atol = rtol * max(1.0, np.max(np.abs(want)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert np.isclose(whole.counts.sum(), weights.sum())


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_update_of_blended_statistics_blends_natural_parameters(covariance_type):
    # The stochastic-VI step: q(theta) from a convex blend of statistics has the
    # blend of the natural parameters beta, beta m, Psi + beta m m^T and nu.
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=30, n_features=3)
    prior, posterior = _fitted_posterior(X, covariance_type)
    kwargs = _kwargs(covariance_type, "dirichlet_distribution")
    a = backend.chunk_statistics(X[:40], posterior, 1e-6, **kwargs)
    b = backend.chunk_statistics(X[40:], posterior, 1e-6, **kwargs)
    rho = 0.3
    blended = backend.update(prior, blend_statistics(a, b, rho), 1e-6, **kwargs)

    def natural(statistics):
        q = backend.update(prior, statistics, 1e-6, **kwargs)
        beta_m = q.mean_precision[:, None] * q.means
        outer = _maths.structured_outer(
            tf.constant(beta_m), tf.constant(q.means), STRUCTURES[covariance_type]
        ).numpy()
        return [
            q.concentration_a,
            q.mean_precision,
            beta_m,
            q.degrees_of_freedom,
            q.scale_inverse + outer,
        ]

    for got, one, two in zip(
        natural(blend_statistics(a, b, rho)), natural(a), natural(b)
    ):
        np.testing.assert_allclose(got, (1 - rho) * one + rho * two, rtol=1e-10)
    assert blended.means.shape == posterior.means.shape


@pytest.mark.parametrize("weight_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_compiled_loop_equals_the_steps(covariance_type, weight_type):
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=30, n_features=3)
    resp = rng.dirichlet(np.ones(4), size=X.shape[0])
    weights = rng.uniform(0.5, 2.0, size=X.shape[0])
    prior = _default_prior(X, covariance_type, 4)
    kwargs = _kwargs(covariance_type, weight_type)
    result = backend.fit_variational_posterior(
        X,
        resp,
        prior,
        reg_covar=1e-6,
        tol=0.0,
        max_iter=4,
        sample_weight=weights,
        **kwargs,
    )
    statistics = backend.initial_statistics(X, resp, sample_weight=weights, **kwargs)
    posterior = backend.update(prior, statistics, 1e-6, **kwargs)
    bounds = []
    for _ in range(4):
        statistics = backend.chunk_statistics(
            X, posterior, 1e-6, sample_weight=weights, **kwargs
        )
        posterior = backend.update(prior, statistics, 1e-6, **kwargs)
        bounds.append(backend.lower_bound(prior, posterior, statistics, 1e-6, **kwargs))
    np.testing.assert_allclose(result["lower_bounds"], bounds, rtol=1e-12)
    for got, want in zip(result["posterior"], posterior):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_one_trace_per_structure_serves_every_shape():
    rng = np.random.RandomState(0)
    kwargs = _kwargs("diag", "dirichlet_distribution")
    for n_samples, n_features, n_components in [(30, 2, 2), (50, 3, 4), (20, 1, 1)]:
        X = rng.randn(n_samples, n_features)
        resp = rng.dirichlet(np.ones(n_components), size=n_samples)
        prior = _default_prior(X, "diag", n_components)
        result = backend.fit_variational_posterior(
            X, resp, prior, reg_covar=1e-6, tol=1e-3, max_iter=20, **kwargs
        )
        statistics = backend.chunk_statistics(X, result["posterior"], 1e-6, **kwargs)
        backend.update(prior, statistics, 1e-6, **kwargs)
    for step in ("loop", "chunk_statistics", "update"):
        function = backend.compiled(step, "diag", "dirichlet_distribution")
        assert function.experimental_get_tracing_count() == 1


def _thin_full_posterior(rng, n_samples=1000, angle=3e-4):
    """Two thin discs (precision 1e8 across) tilted by `angle`, data and posterior.

    Points of either disc are O(1) Mahalanobis units from the other, so q(z)
    is uncertain, while each term of the expansion d(x) . c_k is O(1e8).
    """
    first = np.linalg.qr(rng.randn(3, 3))[0]
    tilt = np.array(
        [
            [1, 0, 0],
            [0, np.cos(angle), -np.sin(angle)],
            [0, np.sin(angle), np.cos(angle)],
        ]
    )
    rotations = np.stack([first, first @ tilt])
    scales = np.array([1.0, 1.0, 1e-4])
    X = np.vstack([(rng.randn(n_samples, 3) * scales) @ r.T for r in rotations])
    covariances = np.einsum("kij,j,klj->kil", rotations, scales**2, rotations)
    nu = np.full(2, float(n_samples))
    posterior = backend.update(
        _default_prior(X, "full", 2),
        backend.initial_statistics(
            X, np.repeat(np.eye(2), n_samples, axis=0), **_kwargs("full")
        ),
        1e-12,
        **_kwargs("full"),
    )
    posterior = posterior._replace(
        means=np.zeros((2, 3)),
        degrees_of_freedom=nu,
        scale_inverse=nu[:, None, None] * covariances,
    )
    return X, posterior


def test_float32_statistics_use_float64_where_rounding_would_show(monkeypatch):
    # E[Lambda] of 1e8 across two tilted axes: the float32 expansion d(x) . c_k
    # cancels terms of 1e8 to leave O(1). The per-block bound must send these
    # blocks to float64; forcing float32 shows what it prevents.
    rng = np.random.RandomState(0)
    X, posterior = _thin_full_posterior(rng)

    def statistics(dtype):
        return backend.chunk_statistics(
            X.astype(dtype), posterior, 1e-12, **_kwargs("full")
        )

    want = statistics(np.float64)
    got = statistics(np.float32)
    np.testing.assert_allclose(got.counts, want.counts, rtol=1e-4)
    np.testing.assert_allclose(got.resp_entropy, want.resp_entropy, rtol=1e-3, atol=1)
    monkeypatch.setattr(_statistics, "_MAX_MAHALANOBIS_ERROR", np.inf)
    monkeypatch.setattr(_loop, "_COMPILED", {})
    forced = statistics(np.float32)
    assert abs(forced.resp_entropy - want.resp_entropy) > 10.0


def _block_statistics(X, posterior, covariance_type):
    """Design sums and entropy of all rows of X as one block, by `_block_e_step`."""
    structure = STRUCTURES[covariance_type]
    posterior = Posterior(*(tf.constant(p, tf.float64) for p in posterior))
    moments = _maths.posterior_moments(posterior, structure)
    offset = _maths.log_rho_offset(posterior, moments, 1e-6, "dirichlet_process")
    layout = _statistics.design_layout(X.shape[1], structure)
    coefficients = _statistics.mahalanobis_coefficients(
        posterior.means, moments, structure, layout
    )
    rows = tf.constant(X)
    e_step = _statistics._block_e_step(
        rows, None, coefficients, offset, structure, layout
    )
    sums, entropy = e_step(
        0,
        0,
        X.shape[0],
        _statistics.transposed_design(rows, structure, layout),
        tf.ones([X.shape[0]], tf.float64),
    )
    return np.append(sums.numpy().ravel(), entropy.numpy())


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_float32_e_step_redoes_in_float64_only_rows_whose_bound_fails(
    covariance_type,
):
    # One far outlier in a block: its row goes to float64, log rho and sums,
    # and the others keep the float32 GEMMs, so one outlier no longer costs
    # its whole block.
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=20, n_features=3)
    _, posterior = _fitted_posterior(X, covariance_type)
    X[5] = 1e3
    others = np.arange(len(X)) != 5
    outlier = _block_statistics(X[5:6], posterior, covariance_type)
    np.testing.assert_allclose(
        _block_statistics(X[5:6].astype(np.float32), posterior, covariance_type),
        outlier,
        rtol=1e-14,
    )
    low_others = _block_statistics(
        X[others].astype(np.float32), posterior, covariance_type
    )
    exact_others = _block_statistics(X[others], posterior, covariance_type)
    assert np.max(np.abs(low_others - exact_others)) > 0.0  # float32 GEMMs ran
    np.testing.assert_allclose(
        _block_statistics(X.astype(np.float32), posterior, covariance_type),
        low_others + outlier,
        rtol=1e-6,
        atol=1e-6 * np.max(np.abs(exact_others)),
    )


def test_exposed_rows_count_only_components_that_matter():
    # Row 0 is near a broad component (error bound 1e-3) and 100 nats from a
    # tight one (bound 1): the tight one cannot matter, so row 0 keeps its
    # float32 log rho. Row 1 sits near the tight one, which exposes it.
    log_rho = tf.constant([[0.0, -40.0], [-100.0, 0.0]], tf.float64)
    error_per_design_norm = tf.constant([1e-3, 1.0], tf.float64)
    design_norms = tf.constant([1.0, 1.0], tf.float64)
    exposed = _statistics._exposed_rows(log_rho, error_per_design_norm, design_norms)
    np.testing.assert_array_equal(exposed.numpy(), [False, True])
    # Within _NEGLIGIBLE_LOG_RHO of the best, the tight component exposes row 0.
    near = tf.constant([[0.0, -40.0], [-20.0, 0.0]], tf.float64)
    exposed = _statistics._exposed_rows(near, error_per_design_norm, design_norms)
    np.testing.assert_array_equal(exposed.numpy(), [True, True])


def test_closed_form_kls_match_tfp():
    rng = np.random.RandomState(0)
    a_q, b_q, a_p, b_p = (rng.uniform(0.2, 5.0, size=4) for _ in range(4))
    np.testing.assert_allclose(
        _maths.beta_kl(a_q, b_q, a_p, b_p).numpy(),
        tfd.kl_divergence(tfd.Beta(a_q, b_q), tfd.Beta(a_p, b_p)).numpy(),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        _maths.gamma_kl(a_q, b_q, a_p, b_p).numpy(),
        tfd.kl_divergence(tfd.Gamma(a_q, b_q), tfd.Gamma(a_p, b_p)).numpy(),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        _maths.dirichlet_kl(a_q, a_p).numpy(),
        tfd.kl_divergence(tfd.Dirichlet(a_q), tfd.Dirichlet(a_p)).numpy(),
        rtol=1e-10,
    )


def test_warm_and_cold_starts_share_one_trace():
    rng = np.random.RandomState(0)
    X = blobs(rng, n_per_blob=20)
    resp = rng.dirichlet(np.ones(3), size=X.shape[0])
    prior = _default_prior(X, "spherical", 3)
    kwargs = dict(reg_covar=1e-6, tol=1e-3, **_kwargs("spherical"))
    cold = backend.fit_variational_posterior(X, resp, prior, max_iter=5, **kwargs)
    warm = backend.fit_variational_posterior(
        X,
        resp[:0],
        prior,
        max_iter=5,
        posterior_init=cold["posterior"],
        lower_bound_init=cold["lower_bounds"][-1],
        **kwargs,
    )
    assert warm["lower_bounds"][0] >= cold["lower_bounds"][-1] - 1e-9
    loop = backend.compiled("loop", "spherical", "dirichlet_process")
    assert loop.experimental_get_tracing_count() == 1


def test_first_fits_of_many_structures_log_no_retracing_warning(caplog):
    # Each (structure, dtype) has its own compiled function, traced once; TF must
    # not read them as one function retraced (it warns after 5 such traces).
    rng = np.random.RandomState(0)
    X = rng.randn(40, 2)
    resp = rng.dirichlet(np.ones(2), size=40)
    with caplog.at_level("WARNING", logger="tensorflow"):
        for covariance_type in COVARIANCE_TYPES:
            for dtype in (np.float64, np.float32):
                kwargs = _kwargs(covariance_type, "dirichlet_distribution")
                backend.initial_statistics(X.astype(dtype), resp, **kwargs)
                backend.fit_variational_posterior(
                    X.astype(dtype),
                    resp,
                    _default_prior(X, covariance_type, 2),
                    reg_covar=1e-6,
                    tol=1e-3,
                    max_iter=2,
                    **kwargs,
                )
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
