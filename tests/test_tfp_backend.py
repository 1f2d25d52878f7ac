"""Tests of the TFP backend's maths against closed forms and Monte-Carlo estimates."""

import numpy as np
import pytest
from scipy.special import gammaln, multigammaln

from skbayesmix import _tfp_backend as backend

tf = pytest.importorskip("tensorflow")
tfp = pytest.importorskip("tensorflow_probability")
tfd = tfp.distributions

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
WEIGHT_PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]


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
    return (1.0 / n_components, 1.0, X.mean(axis=0), float(X.shape[1]), psi0)


def _blobs(rng, n_per_blob=60, n_features=2):
    centres = np.array([[2.0, 0.0], [-2.0, -4.0], [-2.0, 4.0]])[:, :n_features]
    return np.vstack([rng.randn(n_per_blob, n_features) + c for c in centres])


def _posterior_and_elbo(X, resp, prior, covariance_type, weight_type, reg_covar=0.0):
    """The closed-form posterior for `resp`, and the ELBO at (resp, posterior).

    Traced with unknown shapes, as in the compiled loop.
    """
    prior = tuple(tf.constant(np.asarray(p, np.float64)) for p in prior)
    compute = tf.function(
        lambda X, log_resp: _posterior_and_elbo_graph(
            X, log_resp, prior, covariance_type, weight_type, reg_covar
        ),
        input_signature=[tf.TensorSpec([None, None], tf.float64)] * 2,
    )
    posterior, elbo = compute(X, np.log(resp))
    return tuple(p.numpy() for p in posterior), float(elbo)


def _posterior_and_elbo_graph(X, log_resp, prior, covariance_type, weight_type, reg):
    reg_covar = reg
    weights = tf.ones_like(X[:, 0])
    features = backend._second_order_features(X, covariance_type, True)
    stats = backend._expected_statistics(
        X, features, weights, log_resp, covariance_type
    )
    posterior = backend._update_posterior(
        stats, prior, reg_covar, covariance_type, weight_type
    )
    moments = backend._precision_moments(
        posterior[4], posterior[5], tf.shape(X)[1], covariance_type
    )
    elbo = backend._evidence_lower_bound(
        stats, posterior, moments, prior, reg_covar, covariance_type, weight_type
    )
    return posterior, elbo


def test_wishart_kl_matches_monte_carlo():
    rng = np.random.RandomState(0)
    n_features = 3
    psi_q = np.stack([_random_spd(rng, n_features) for _ in range(2)])
    psi_p = _random_spd(rng, n_features, scale=2.0)
    df_q = np.array([6.5, 9.0])
    df_p = 4.0
    kl = backend._wishart_kl(
        tf.constant(df_q),
        tf.linalg.cholesky(psi_q),
        tf.constant(df_p, tf.float64),
        tf.linalg.cholesky(psi_p),
    ).numpy()

    q = backend._wishart(tf.constant(df_q), tf.linalg.cholesky(psi_q))
    p = backend._wishart(tf.constant(df_p, tf.float64), tf.linalg.cholesky(psi_p)[None])
    samples = q.sample(40000, seed=0)
    log_ratio = (q.log_prob(samples) - p.log_prob(samples)).numpy()  # [s, 2]
    mc = log_ratio.mean(axis=0)
    stderr = log_ratio.std(axis=0) / np.sqrt(log_ratio.shape[0])
    assert np.all(kl > 0)
    np.testing.assert_array_less(np.abs(kl - mc), 5 * stderr + 1e-3)


def test_wishart_kl_is_zero_between_equal_distributions():
    rng = np.random.RandomState(0)
    psi = _random_spd(rng, 4)
    kl = backend._wishart_kl(
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
    moments = backend._precision_moments(
        tf.constant(nu), tf.constant(psi), tf.constant(n_features), covariance_type
    )
    if covariance_type == "full":
        precision = backend._wishart(tf.constant(nu), tf.linalg.cholesky(psi))
        samples = precision.sample(40000, seed=1).numpy()
        log_det = np.linalg.slogdet(samples)[1]
        trace = np.trace(samples, axis1=-2, axis2=-1)
    else:
        gamma = backend._precision_gamma(
            tf.constant(nu), tf.constant(psi), float(n_features), covariance_type
        )
        samples = gamma.sample(40000, seed=1).numpy()
        if covariance_type == "diag":
            log_det, trace = np.log(samples).sum(-1), samples.sum(-1)
        else:
            log_det, trace = n_features * np.log(samples), n_features * samples
    np.testing.assert_allclose(
        moments.expected_log_det.numpy(), log_det.mean(0), atol=0.03
    )
    np.testing.assert_allclose(moments.expected_trace.numpy(), trace.mean(0), rtol=0.02)


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
            backend._wishart(nu, tf.linalg.cholesky(psi)),
            backend._wishart(nu0, tf.linalg.cholesky(psi0)[None]),
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
            backend._precision_gamma(nu, psi, float(n_features), covariance_type),
            backend._precision_gamma(nu0, psi0, float(n_features), covariance_type),
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
    X = _blobs(rng, n_per_blob=15)
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
    X = _blobs(rng, n_per_blob=100)
    X = (X - X.mean(0)) / X.std()
    n_components = 8
    resp = rng.dirichlet(np.ones(n_components), size=X.shape[0])
    result = backend.fit_variational_posterior(
        X,
        resp,
        _default_prior(X, covariance_type, n_components),
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        reg_covar=1e-6,
        tol=1e-8,
        max_iter=300,
    )
    lower_bounds = result["lower_bounds"]
    assert len(lower_bounds) == result["n_iter"] > 10
    # Rounding in float64 only.
    assert np.all(np.diff(lower_bounds) >= -1e-9 * np.abs(lower_bounds[1:]))


def test_fit_variational_posterior_accepts_float32():
    rng = np.random.RandomState(0)
    X = _blobs(rng).astype(np.float32)
    resp = np.eye(3, dtype=np.float32)[rng.randint(3, size=X.shape[0])]
    result = backend.fit_variational_posterior(
        X,
        resp,
        _default_prior(X, "full", 3),
        covariance_type="full",
        weight_concentration_prior_type="dirichlet_process",
        reg_covar=1e-6,
        tol=1e-3,
        max_iter=100,
    )
    # Sums over samples, the posterior and the bound are accumulated in float64;
    # the estimator casts the fitted attributes back to float32.
    assert all(p.dtype == np.float64 for p in result["posterior"])
    assert result["lower_bounds"].dtype == np.float64


def test_compiled_loop_is_reused_across_shapes():
    rng = np.random.RandomState(0)
    for n_samples, n_features, n_components in [(30, 2, 2), (50, 3, 4), (20, 1, 1)]:
        X = rng.randn(n_samples, n_features)
        resp = rng.dirichlet(np.ones(n_components), size=n_samples)
        backend.fit_variational_posterior(
            X,
            resp,
            _default_prior(X, "diag", n_components),
            covariance_type="diag",
            weight_concentration_prior_type="dirichlet_distribution",
            reg_covar=1e-6,
            tol=1e-3,
            max_iter=20,
        )
    fit = backend._compiled_coordinate_ascent(
        "diag", "dirichlet_distribution", np.float64, outer_products=True
    )
    assert fit.experimental_get_tracing_count() == 1


def test_full_covariance_paths_agree(monkeypatch):
    # Large inputs skip the x x^T features; both paths must give one answer.
    rng = np.random.RandomState(0)
    X = _blobs(rng, n_per_blob=50, n_features=2)
    resp = rng.dirichlet(np.ones(4), size=X.shape[0])
    kwargs = dict(
        covariance_type="full",
        weight_concentration_prior_type="dirichlet_process",
        reg_covar=1e-6,
        tol=1e-6,
        max_iter=50,
    )
    prior = _default_prior(X, "full", 4)
    with_features = backend.fit_variational_posterior(X, resp, prior, **kwargs)
    monkeypatch.setattr(backend, "_OUTER_PRODUCTS_MAX_SIZE", 0)
    without = backend.fit_variational_posterior(X, resp, prior, **kwargs)
    np.testing.assert_allclose(
        with_features["lower_bounds"], without["lower_bounds"], rtol=1e-10
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_blocked_expected_statistics_match_unblocked(monkeypatch, covariance_type):
    # Ragged blocks of 7 rows, with sample weights: the per-block sums must add up
    # to the statistics of the whole batch.
    monkeypatch.setattr(backend, "_BLOCK_SIZE", 7)
    rng = np.random.RandomState(0)
    X = tf.constant(_blobs(rng, n_per_blob=10, n_features=2))
    sample_weight = tf.constant(rng.uniform(0.5, 2.0, size=X.shape[0]))
    resp = tf.constant(rng.dirichlet(np.ones(3), size=X.shape[0]))
    prior = tuple(
        tf.constant(np.asarray(p, np.float64))
        for p in _default_prior(X.numpy(), covariance_type, 3)
    )
    features = backend._second_order_features(X, covariance_type, True)
    posterior = backend._update_posterior(
        backend._sufficient_statistics(
            X, features, sample_weight, resp, covariance_type
        ),
        prior,
        1e-6,
        covariance_type,
        "dirichlet_process",
    )
    moments = backend._precision_moments(
        posterior[4], posterior[5], tf.shape(X)[1], covariance_type
    )
    log_resp = backend._estimate_log_resp(
        X, features, posterior, moments, 1e-6, covariance_type, "dirichlet_process"
    )
    expected = backend._expected_statistics(
        X, features, sample_weight, log_resp, covariance_type
    )
    design = backend._design_features(X, covariance_type)
    blocked = backend._blocked_expected_statistics(
        design,
        design,
        sample_weight,
        posterior,
        moments,
        tf.constant(1e-6, tf.float64),
        covariance_type,
        "dirichlet_process",
    )
    for got, want in zip(blocked, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-10)
    counts, design_moments = backend._blocked_sufficient_statistics(
        design, sample_weight, resp
    )
    initial = backend._unpack_statistics(
        counts, design_moments, tf.shape(X)[1], covariance_type
    )
    direct = backend._sufficient_statistics(
        X, features, sample_weight, resp, covariance_type
    )
    for got, want in zip(initial, direct):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
