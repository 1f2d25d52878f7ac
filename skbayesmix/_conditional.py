"""NumPy maths for imputation: the predictive of missing features given observed ones.

Component k of the posterior predictive is a Student-t St(mu, S, df) with scale
S = c_k * covariances_[k] (see `skbayesmix._gaussian`). Given the observed
features o of a row, its missing features m are again Student-t::

    x_m | x_o, z = k  ~  St(mu_m|o, (df + q_o) / (df + d_o) * S_m|o, df + d_o)

    mu_m|o = mu_m - inv(P_mm) P_mo (x_o - mu_o),   S_m|o = inv(S^-1_mm) = c inv(P_mm)

with P = inv(covariances_[k]), d_o the number of observed features and q_o the
squared Mahalanobis distance of x_o under S_oo. With F the precision Cholesky
factor (P = F F^T), A = F[m, :], y = delta @ F and delta_m = 0, P_mm = A A^T
and (P delta)_m = A y, so only the small r x r block P_mm is factored, for
batches of rows that miss the same number r of features.

The mixture's conditional is the mixture of these with the responsibilities of
the marginals over o (`predict_proba`), so the conditional expectation is
sum_k resp_k mu_m|o,k. 'diag' is a product of univariate t's: the missing
features of a component do not depend on the observed ones. 'spherical' is an
isotropic D-variate t: its conditional location is mu_m and only its scale and
df depend on x_o.
"""

import numpy as np

from skbayesmix._gaussian import (
    _missing_precision_cholesky,
    _missing_rows_of,
    _rows_by_n_missing,
    _student_t_degrees_of_freedom,
    _student_t_scale_factor,
)

__all__ = ["conditional_draws", "conditional_expectation"]


def _predictive_constants(fitted):
    """df_k and c_k of each component's Student-t, in float64.

    Parameters
    ----------
    fitted : VariationalGaussianMixture
        A fitted mixture.

    Returns
    -------
    student_df, scale_factor : ndarray of shape (n_components,)
    """
    n_components, n_features = fitted.means_.shape
    nu = np.broadcast_to(
        np.asarray(fitted.degrees_of_freedom_, dtype=np.float64), (n_components,)
    )
    student_df = _student_t_degrees_of_freedom(nu, fitted.covariance_type, n_features)
    scale_factor = _student_t_scale_factor(
        fitted.mean_precision_, nu, student_df, fitted.covariance_type
    )
    return np.asarray(student_df, np.float64), np.asarray(scale_factor, np.float64)


def _dense_factors(fitted):
    """The precision Cholesky factors F_k of 'full' and 'tied', [K, D, D] float64."""
    n_components, n_features = fitted.means_.shape
    factors = np.asarray(fitted.precisions_cholesky_, dtype=np.float64)
    return np.broadcast_to(factors, (n_components, n_features, n_features))


def _centred_observed(X, means):
    """delta = x - mu_k with delta_m = 0: shape (n_rows, n_components, n_features)."""
    return np.where(np.isnan(X)[:, None, :], 0.0, X[:, None, :] - means[None])


def _conditional_terms(X, missing_index, means, factors):
    """Cholesky factors of P_mm, conditional locations and q_o of a group of rows.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Float64 rows that all miss the r features `missing_index`.

    missing_index : ndarray of shape (n_rows, r)
        Output of :func:`skbayesmix._gaussian._rows_by_n_missing`.

    means : ndarray of shape (n_components, n_features)

    factors : ndarray of shape (n_components, n_features, n_features)
        Output of :func:`_dense_factors`.

    Returns
    -------
    cholesky : ndarray of shape (n_rows, n_components, r, r)
        L with L L^T = P_mm.

    location : ndarray of shape (n_rows, n_components, r)
        mu_m|o of each component.

    mahalanobis : ndarray of shape (n_rows, n_components)
        delta_o^T inv(covariances_oo) delta_o, >= 0.
    """
    delta = _centred_observed(X, means)  # [n, K, D]
    whitened = np.einsum("nkd,kde->nke", delta, factors)  # y = delta @ F
    factor_rows = _missing_rows_of(factors, missing_index)  # [n, K, r, D]
    cholesky = _missing_precision_cholesky(factor_rows)  # [n, K, r, r]
    u = np.einsum("nkrd,nkd->nkr", factor_rows, whitened)  # (P delta)_m
    z = _solve(cholesky, u)  # inv(L) u
    shift = _solve(np.swapaxes(cholesky, -1, -2), z)  # inv(P_mm) u
    location = means[:, missing_index].transpose(1, 0, 2) - shift  # [n, K, r]
    # The Schur complement, as in `_missing_block_terms`; rounding can take it
    # just below 0.
    mahalanobis = np.einsum("nkd,nkd->nk", whitened, whitened) - np.einsum(
        "nkr,nkr->nk", z, z
    )
    return cholesky, location, np.maximum(mahalanobis, 0.0)


def _solve(matrices, b):
    """Solve matrices @ x = b, batched over the leading axes; b has one axis less."""
    return np.linalg.solve(matrices, b[..., None])[..., 0]


def _incomplete_rows(fitted, X):
    """A float64 copy of X, its NaN mask, its rows with NaN and their resp.

    Returns
    -------
    X_copy : ndarray of shape (n_samples, n_features)
    missing : bool ndarray of shape (n_samples, n_features)
    rows : ndarray of shape (n_rows,)
        The rows with at least one NaN.
    incomplete : ndarray of shape (n_rows, n_features)
        A copy of those rows, to be completed and written back.
    resp : ndarray of shape (n_rows, n_components)
        Their responsibilities under the marginals over their observed features
        (`predict_proba`); None when no row has a NaN.
    """
    X_copy = np.array(X, dtype=np.float64)
    missing = np.isnan(X_copy)
    rows = np.flatnonzero(missing.any(axis=1))
    incomplete = X_copy[rows]
    if rows.size == 0:
        return X_copy, missing, rows, incomplete, None
    resp = np.asarray(fitted.predict_proba(incomplete), np.float64)
    return X_copy, missing, rows, incomplete, resp


def conditional_expectation(fitted, X):
    """Each row with its missing entries set to E[x_m | x_o] under the predictive.

    Parameters
    ----------
    fitted : VariationalGaussianMixture
        A fitted mixture, of any covariance type.

    X : ndarray of shape (n_samples, n_features)
        Rows with NaN at missing features and no inf; validated.

    Returns
    -------
    X_filled : ndarray of shape (n_samples, n_features)
        Float64; observed entries as given. A row with every feature missing
        gets the predictive mean, sum_k weights_k means_k.
    """
    X_filled, missing, rows, incomplete, resp = _incomplete_rows(fitted, X)
    if rows.size == 0:
        return X_filled
    means = np.asarray(fitted.means_, dtype=np.float64)
    n_components, n_features = means.shape
    if fitted.covariance_type in ("diag", "spherical"):
        incomplete[missing[rows]] = (resp @ means)[missing[rows]]
        X_filled[rows] = incomplete
        return X_filled
    factors = _dense_factors(fitted)
    row_bytes = 8 * n_components * n_features
    for group, missing_index in _rows_by_n_missing(missing[rows], row_bytes):
        location = _conditional_terms(incomplete[group], missing_index, means, factors)[
            1
        ]
        filled = np.einsum("nk,nkr->nr", resp[group], location)  # [n, r]
        incomplete[group[:, None], missing_index] = filled
    X_filled[rows] = incomplete
    return X_filled


def conditional_draws(fitted, X, rng):
    """Each row with its missing entries drawn from p(x_m | x_o) of the predictive.

    A component is drawn from the responsibilities of the row's marginal, then
    the missing features from that component's conditional Student-t.

    Parameters
    ----------
    fitted : VariationalGaussianMixture
        A fitted mixture, of any covariance type.

    X : ndarray of shape (n_samples, n_features)
        Rows with NaN at missing features and no inf; validated.

    rng : numpy.random.RandomState

    Returns
    -------
    X_drawn : ndarray of shape (n_samples, n_features)
        Float64; observed entries as given.
    """
    X_drawn, missing, rows, incomplete, resp = _incomplete_rows(fitted, X)
    if rows.size == 0:
        return X_drawn
    cumulative = np.cumsum(resp, axis=1)
    uniform = rng.uniform(size=(rows.size, 1)) * cumulative[:, -1:]
    components = np.minimum((uniform > cumulative).sum(axis=1), resp.shape[1] - 1)
    student_df, scale_factor = _predictive_constants(fitted)
    means = np.asarray(fitted.means_, dtype=np.float64)
    n_components, n_features = means.shape
    n_observed = n_features - missing[rows].sum(axis=1)  # [n]
    df, c = student_df[components], scale_factor[components]  # [n]
    centre = means[components]  # [n, D]
    if fitted.covariance_type == "diag":
        # Independent univariate t's: a draw for every feature, kept where missing.
        precision_cholesky = np.asarray(fitted.precisions_cholesky_, np.float64)
        scale = np.sqrt(c[:, None]) / precision_cholesky[components]  # [n, D]
        draws = centre + scale * rng.standard_t(df[:, None], size=incomplete.shape)
        incomplete[missing[rows]] = draws[missing[rows]]
        X_drawn[rows] = incomplete
        return X_drawn
    if fitted.covariance_type == "spherical":
        precision = np.asarray(fitted.precisions_cholesky_, np.float64)[components] ** 2
        delta = np.where(missing[rows], 0.0, incomplete - centre)
        q_o = np.sum(delta**2, axis=1) * precision / c  # under S = c / precision
        variance = (df + q_o) / (df + n_observed) * c / precision  # [n]
        df_given = df + n_observed
        gaussian = rng.standard_normal(size=incomplete.shape)
        chi2 = rng.chisquare(df_given)
        draws = centre + gaussian * np.sqrt(variance / (chi2 / df_given))[:, None]
        incomplete[missing[rows]] = draws[missing[rows]]
        X_drawn[rows] = incomplete
        return X_drawn
    factors = _dense_factors(fitted)
    row_bytes = 8 * n_components * n_features
    for group, missing_index in _rows_by_n_missing(missing[rows], row_bytes):
        k = components[group]
        picked = np.arange(group.size)
        cholesky, location, mahalanobis = _conditional_terms(
            incomplete[group], missing_index, means, factors
        )
        cholesky, location = cholesky[picked, k], location[picked, k]  # [n, r, r]
        q_o = mahalanobis[picked, k] / c[group]  # under S_oo = c covariances_oo
        df_given = df[group] + n_observed[group]
        multiplier = (df[group] + q_o) / df_given * c[group]  # [n]
        # inv(L^T) eps has covariance inv(P_mm); a chi2 scales it into the t.
        gaussian = rng.standard_normal(size=location.shape)  # [n, r]
        correlated = _solve(np.swapaxes(cholesky, -1, -2), gaussian)
        chi2 = rng.chisquare(df_given)
        draws = location + correlated * np.sqrt(multiplier / (chi2 / df_given))[:, None]
        incomplete[group[:, None], missing_index] = draws
    X_drawn[rows] = incomplete
    return X_drawn
