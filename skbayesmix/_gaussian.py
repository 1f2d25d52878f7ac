"""NumPy maths for a fitted variational Gaussian mixture: predictive densities."""

import numpy as np
from scipy import linalg
from scipy.special import gammaln, logsumexp
from sklearn.utils import gen_batches

from skbayesmix._state import COVARIANCE_STRUCTURES

# Rows of X are processed in chunks whose largest temporary, of shape
# (n_rows, n_components, n_features), holds about _CHUNK_BYTES, so memory does
# not grow with n_samples. 1 MiB stays in L2 cache and keeps each product small
# enough that a multi-threaded BLAS does not oversubscribe a loaded machine,
# which measured several times faster than 8 MiB chunks. The floor keeps the
# Python loop and the products efficient when n_components * n_features is large.
_CHUNK_BYTES = 2**20
_MIN_CHUNK_ROWS = 256


def _compute_precision_cholesky(covariances, covariance_type):
    """Compute the Cholesky factors of the precision matrices.

    Same result and conventions as
    ``sklearn.mixture._gaussian_mixture._compute_precision_cholesky``.

    Parameters
    ----------
    covariances : ndarray
        Covariances of the components. The shape depends on `covariance_type`:

        - 'full' : shape of (n_components, n_features, n_features)
        - 'tied' : shape of (n_features, n_features)
        - 'diag' : shape of (n_components, n_features)
        - 'spherical' : shape of (n_components,)

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    Returns
    -------
    precisions_cholesky : ndarray
        Same shape and dtype as `covariances`. For 'full' and 'tied', the
        upper-triangular U with inv(covariance) = U @ U.T; for 'diag' and
        'spherical', 1 / sqrt(covariances).

    Raises
    ------
    ValueError
        If a covariance is not positive definite.
    """
    covariances = np.asarray(covariances)
    if covariance_type in ("full", "tied"):
        stacked = covariances if covariance_type == "full" else covariances[None]
        precisions_cholesky = np.empty_like(stacked)
        for k, covariance in enumerate(stacked):
            precisions_cholesky[k] = _precision_cholesky_of(covariance, k)
        if covariance_type == "tied":
            return precisions_cholesky[0]
        return precisions_cholesky
    # `not > 0` also rejects NaN.
    if not np.all(covariances > 0):
        raise ValueError(
            "Some covariances are not strictly positive, so their precisions "
            "are undefined (for instance caused by collapsed samples). Try to "
            "decrease the number of components, increase reg_covar, or scale "
            "the input data."
        )
    return 1.0 / np.sqrt(covariances)


def _precision_cholesky_of(covariance, component):
    """Compute the upper Cholesky factor U of one precision, inv(cov) = U @ U.T.

    Parameters
    ----------
    covariance : ndarray of shape (n_features, n_features)
        Symmetric positive definite covariance matrix.

    component : int
        Index of the component, only used in the error message.

    Returns
    -------
    precision_cholesky : ndarray of shape (n_features, n_features)
        Upper-triangular factor, same dtype as `covariance`.
    """
    try:
        cov_cholesky = linalg.cholesky(covariance, lower=True)
    except ValueError as exc:  # LinAlgError and non-finite entries
        message = (
            f"The covariance matrix of component {component} is not positive "
            "definite (for instance caused by singleton or collapsed samples), "
            "so its precision Cholesky factor is undefined. Try to decrease the "
            "number of components, increase reg_covar, or scale the input data."
        )
        if covariance.dtype == np.float32:
            message += " Passing float64 data instead of float32 may also help."
        raise ValueError(message) from exc
    # inv(L).T is upper triangular and inv(L).T @ inv(L) = inv(L @ L.T).
    identity = np.eye(covariance.shape[0], dtype=cov_cholesky.dtype)
    return linalg.solve_triangular(cov_cholesky, identity, lower=True).T


def _compute_precisions(precisions_cholesky, covariance_type):
    """Compute the precisions from their Cholesky factors.

    Parameters
    ----------
    precisions_cholesky : ndarray
        Output of :func:`_compute_precision_cholesky`; shape depends on
        `covariance_type` as for the covariances.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    Returns
    -------
    precisions : ndarray
        Same shape as `precisions_cholesky`: U @ U.T for 'full' (per component)
        and 'tied', precisions_cholesky ** 2 otherwise.
    """
    if covariance_type == "full":
        return np.matmul(precisions_cholesky, np.swapaxes(precisions_cholesky, 1, 2))
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def _compute_log_det_cholesky(
    precisions_cholesky, covariance_type, n_features, missing=None
):
    """Compute log det(U) per component, which is -0.5 * log det(covariance).

    With `missing`, compute per row -0.5 * log det(covariance_oo) over the
    row's observed features o instead. For 'full' and 'tied' the Schur
    complement gives it without inverting the covariance::

        log det(covariance_oo) = log det(covariance) + log det(precision_mm)

    Parameters
    ----------
    precisions_cholesky : ndarray
        Output of :func:`_compute_precision_cholesky`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    n_features : int
        Number of features.

    missing : ndarray of shape (n_samples, n_features) of bool, default=None
        Which features of each row are missing.

    Returns
    -------
    log_det_cholesky : ndarray of shape (n_components,) or scalar for 'tied'
        Log determinant of the precision Cholesky factor. With `missing`, an
        ndarray of shape (n_samples, n_components), or (n_samples, 1) for
        'tied', of the observed features' log determinants.
    """
    if missing is not None:
        return _compute_log_det_observed_cholesky(
            precisions_cholesky, covariance_type, missing
        )
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)), 1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(precisions_cholesky)))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_cholesky), axis=1)
    return n_features * np.log(precisions_cholesky)


def _compute_log_det_observed_cholesky(precisions_cholesky, covariance_type, missing):
    """Compute -0.5 * log det(covariance_oo) per row and component.

    Parameters
    ----------
    precisions_cholesky : ndarray
        Float64 output of :func:`_compute_precision_cholesky`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    missing : ndarray of shape (n_samples, n_features) of bool
        Which features of each row are missing.

    Returns
    -------
    log_det_cholesky : ndarray of shape (n_samples, n_components)
        Float64; (n_samples, 1) for 'tied'.
    """
    n_samples, n_features = missing.shape
    if covariance_type == "diag":
        return (~missing).astype(np.float64) @ np.log(precisions_cholesky).T
    if covariance_type == "spherical":
        n_observed = n_features - missing.sum(axis=1)  # [n]
        return n_observed[:, None] * np.log(precisions_cholesky)
    factors = precisions_cholesky
    if covariance_type == "tied":
        factors = factors[None]
    log_det = np.broadcast_to(
        _compute_log_det_cholesky(factors, "full", n_features),
        (n_samples, factors.shape[0]),
    ).copy()  # [n, K]
    row_bytes = factors.shape[0] * n_features * 8
    for rows, missing_index in _rows_by_n_missing(missing, row_bytes):
        factor_rows = _missing_rows_of(factors, missing_index)  # [n, K, r, D]
        log_det_missing = _missing_block_terms(factor_rows)[1]  # [n, K]
        log_det[rows] -= 0.5 * log_det_missing
    return log_det


def _rows_by_n_missing(missing, row_bytes):
    """Yield groups of rows that miss the same number r >= 1 of features.

    Grouping by r rather than by pattern lets each group's gathered blocks be
    stacked into one batched array, however many patterns there are.

    Parameters
    ----------
    missing : ndarray of shape (n_samples, n_features) of bool
        Which features of each row are missing.

    row_bytes : int
        Bytes of the temporaries per row and per missing feature; a group
        holds about `_CHUNK_BYTES` of them, and at least one row.

    Yields
    ------
    rows : ndarray of shape (n_rows,)
        Indices of rows that miss r features.

    missing_index : ndarray of shape (n_rows, r)
        The missing features of each of these rows, in increasing order.
    """
    n_missing = missing.sum(axis=1)  # [n]
    for r in np.unique(n_missing[n_missing > 0]):
        rows = np.flatnonzero(n_missing == r)
        missing_index = np.nonzero(missing[rows])[1].reshape(-1, r)  # [n_r, r]
        n_rows = max(1, _CHUNK_BYTES // max(int(r) * row_bytes, 1))
        for start in range(0, rows.shape[0], n_rows):
            yield rows[start : start + n_rows], missing_index[start : start + n_rows]


def _missing_rows_of(factors, missing_index):
    """Gather the rows m of each factor F, for each row's missing features m.

    Parameters
    ----------
    factors : ndarray of shape (n_matrices, n_features, n_columns)
        Factors F with precision F @ F.T.

    missing_index : ndarray of shape (n_samples, r)
        Output of :func:`_rows_by_n_missing`.

    Returns
    -------
    factor_rows : ndarray of shape (n_samples, n_matrices, r, n_columns)
        A = F[m, :], so that A @ A.T is the missing block of the precision.
    """
    return np.swapaxes(np.swapaxes(factors, 0, 1)[missing_index], 1, 2)


def _missing_block_terms(factor_rows, whitened=None):
    """Compute the Schur complement terms that marginalise out missing features.

    For a precision P = F @ F.T, a row c with c_m = 0 on its missing features
    m, y = c @ F and A = F[m, :] (so P_mm = A @ A.T and (P c)_m = A @ y)::

        c_o^T inv(inv(P)_oo) c_o = ||y||^2 - u^T inv(P_mm) u,   u = A @ y
        log det(inv(P)_oo) = log det(inv(P)) + log det(P_mm)

    P_mm is a principal block of a positive definite matrix, so its Cholesky
    factor L exists, and u^T inv(P_mm) u = ||inv(L) @ u||^2.

    Parameters
    ----------
    factor_rows : ndarray of shape (..., r, n_columns)
        Output of :func:`_missing_rows_of`.

    whitened : ndarray of shape (..., n_columns), default=None
        y = c @ F for each row and matrix; None computes the log det only.

    Returns
    -------
    projected_sq_norm : ndarray of shape (...) or None
        u^T inv(P_mm) u, None without `whitened`.

    log_det_missing_precision : ndarray of shape (...)
        log det(P_mm).
    """
    cholesky = _missing_precision_cholesky(factor_rows)  # [..., r, r]
    log_det = 2.0 * np.log(np.diagonal(cholesky, axis1=-2, axis2=-1)).sum(axis=-1)
    if whitened is None:
        return None, log_det
    u = factor_rows @ whitened[..., None]  # [..., r, 1]
    z = np.linalg.solve(cholesky, u)[..., 0]  # [..., r]
    return np.einsum("...r,...r->...", z, z), log_det


def _missing_precision_cholesky(factor_rows):
    """Compute the lower Cholesky factor L of P_mm = A @ A.T, A = F[m, :].

    Parameters
    ----------
    factor_rows : ndarray of shape (..., r, n_columns)
        Output of :func:`_missing_rows_of`.

    Returns
    -------
    cholesky : ndarray of shape (..., r, r)
        L with L @ L.T = P_mm, the missing block of the precision.
    """
    return np.linalg.cholesky(factor_rows @ np.swapaxes(factor_rows, -1, -2))


def _student_t_degrees_of_freedom(degrees_of_freedom, covariance_type, n_features):
    """Compute the degrees of freedom of each component's predictive Student-t.

    Parameters
    ----------
    degrees_of_freedom : ndarray of shape (n_components,) or scalar
        Degrees of freedom nu of the Wishart ('full', 'tied') or Gamma
        ('diag', 'spherical') posterior; a scalar for 'tied'.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    n_features : int
        Number of features D.

    Returns
    -------
    student_df : ndarray of shape (n_components,) or scalar for 'tied'
        nu + 1 - D for 'full' and 'tied', nu for 'diag' (per dimension), and
        D * nu for 'spherical'.
    """
    structure = COVARIANCE_STRUCTURES[covariance_type]
    return structure.student_degrees_of_freedom(degrees_of_freedom, n_features)


def _student_t_scale_factor(
    mean_precision, degrees_of_freedom, student_df, covariance_type
):
    """Compute c_k such that the Student-t scale is c_k * covariances_[k].

    Parameters
    ----------
    mean_precision : ndarray of shape (n_components,)
        Precision scale beta of the posterior on the means.

    degrees_of_freedom : ndarray of shape (n_components,) or scalar
        Degrees of freedom nu of the Wishart or Gamma posterior.

    student_df : ndarray of shape (n_components,) or scalar
        Output of :func:`_student_t_degrees_of_freedom`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    Returns
    -------
    scale_factor : ndarray of shape (n_components,)
        c = nu * (1 + beta) / (beta * df) for 'full' and 'tied', and
        c = (1 + beta) / beta for 'diag' and 'spherical'.
    """
    mean_precision = np.asarray(mean_precision, dtype=np.float64)
    # The extra 1 / beta is the uncertainty of the posterior mean.
    scale_factor = (1.0 + mean_precision) / mean_precision
    if COVARIANCE_STRUCTURES[covariance_type].family == "wishart":
        # covariances_ = Psi / nu, while the t scale is Psi / df.
        scale_factor = scale_factor * degrees_of_freedom / student_df
    return scale_factor


def _log_student_t_norm(student_df, scale_factor, log_det_cholesky, n_features, diag):
    """Compute the log normalising constant of each component's Student-t.

    For a D-variate t with df degrees of freedom and scale Sigma::

        log Z = gammaln((df + D) / 2) - gammaln(df / 2) - D / 2 * log(pi * df)
                - 1/2 * log det(Sigma)

    with log det(Sigma) = D * log(c) - 2 * log det(U). For 'diag' the density
    is a product of D univariate t's, so the gamma terms are counted D times
    with D = 1 inside.

    The marginal of a t over d of its features is a d-variate t with the same
    df and the block Sigma_oo of its scale, so passing the observed counts d
    as `n_features` and -0.5 * log det(covariance_oo) as `log_det_cholesky`
    gives the normalising constants of each row's marginals.

    Parameters
    ----------
    student_df : ndarray of shape (n_components,)
        Degrees of freedom of the Student-t's.

    scale_factor : ndarray of shape (n_components,)
        Output of :func:`_student_t_scale_factor`.

    log_det_cholesky : ndarray of shape (n_components,) or (n_samples, n_components)
        Output of :func:`_compute_log_det_cholesky`.

    n_features : int or ndarray of shape (n_samples, 1)
        Number of features D, or of observed features per row.

    diag : bool
        Whether the density is a product of univariate t's.

    Returns
    -------
    log_norm : ndarray of shape (n_components,) or (n_samples, n_components)
        Float64 log normalising constants.
    """
    n_dims = 1 if diag else n_features
    # Counting blocks rather than dividing D by itself keeps d = 0 finite.
    n_blocks = n_features if diag else 1
    log_norm_per_block = (
        gammaln(0.5 * (student_df + n_dims))
        - gammaln(0.5 * student_df)
        - 0.5 * n_dims * np.log(np.pi * student_df)
    )
    log_det_scale = n_features * np.log(scale_factor) - 2.0 * log_det_cholesky
    return n_blocks * log_norm_per_block - 0.5 * log_det_scale


def _compute_student_t_whitening(
    means, precisions_cholesky, covariance_type, student_df, scale_factor
):
    """Compute the map x -> y_k = (x - means[k]) @ W_k with ||y_k||^2 = q_k / df_k.

    q_k is the squared Mahalanobis distance to means[k] under the Student-t
    scale c_k * covariances_[k], so W_k = U_k / sqrt(c_k * df_k). All
    components are stacked along the columns so that one chunk of rows is
    whitened by a single product.

    Parameters
    ----------
    means : ndarray of shape (n_components, n_features)
        Locations of the Student-t's.

    precisions_cholesky : ndarray
        Output of :func:`_compute_precision_cholesky`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    student_df : ndarray of shape (n_components,)
        Output of :func:`_student_t_degrees_of_freedom`.

    scale_factor : ndarray of shape (n_components,)
        Output of :func:`_student_t_scale_factor`.

    Returns
    -------
    whitening : ndarray of shape (n_features, n_components * n_features) or \
            (n_components * n_features,)
        The stacked W_k: a matrix for 'full' and 'tied', the diagonals only
        for 'diag' and 'spherical'.

    whitened_means : ndarray of shape (n_components * n_features,)
        The stacked means[k] @ W_k.
    """
    n_components, n_features = means.shape
    inv_sqrt_df_scale = 1.0 / np.sqrt(scale_factor * student_df)  # [K]
    if covariance_type in ("full", "tied"):
        precisions_cholesky = np.broadcast_to(
            precisions_cholesky, (n_components, n_features, n_features)
        )
        whitening = precisions_cholesky * inv_sqrt_df_scale[:, None, None]
        whitened_means = np.einsum("kj,kji->ki", means, whitening)  # [K, D]
        whitening = np.moveaxis(whitening, 0, 1).reshape(n_features, -1)
        return whitening, whitened_means.ravel()
    if covariance_type == "spherical":
        precisions_cholesky = precisions_cholesky[:, None]
    whitening = np.broadcast_to(
        precisions_cholesky * inv_sqrt_df_scale[:, None], (n_components, n_features)
    )  # [K, D]
    return whitening.ravel(), (means * whitening).ravel()


def _estimate_log_student_t_kernel(
    X, whitening, whitened_means, covariance_type, student_df
):
    """Estimate the unnormalised log Student-t density of each component.

    With q the squared Mahalanobis distance of x to means[k] under the scale
    c * covariances_[k], the kernel is::

        -(df + D) / 2 * log(1 + q / df)

    and for 'diag' the sum over dimensions of the univariate kernels
    -(df + 1) / 2 * log(1 + q_d / df).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Input data, one chunk of rows.

    whitening : ndarray
        Output of :func:`_compute_student_t_whitening`, same dtype as `X`.

    whitened_means : ndarray of shape (n_components * n_features,)
        Output of :func:`_compute_student_t_whitening`, same dtype as `X`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    student_df : ndarray of shape (n_components,)
        Degrees of freedom of the Student-t's, same dtype as `X`.

    Returns
    -------
    log_kernel : ndarray of shape (n_samples, n_components)
        Unnormalised log densities.
    """
    n_samples, n_features = X.shape
    n_components = student_df.shape[0]
    # X @ W_k - means[k] @ W_k, as in scikit-learn, trades some cancellation
    # far from the means for a single product over all components.
    if covariance_type in ("full", "tied"):
        y = X @ whitening  # [n, K * D]
    else:
        # Elementwise, since a diagonal whitening as a matrix would cost D times
        # the flops.
        y = np.tile(X, (1, n_components))  # [n, K * D]
        y *= whitening
    y -= whitened_means
    y = y.reshape(n_samples, n_components, n_features)  # [n, K, D]

    if covariance_type == "diag":
        np.square(y, out=y)
        np.log1p(y, out=y)
        # einsum sums a short last axis much faster than np.sum.
        log_kernel = np.einsum("ikj->ik", y)  # [n, K]
        log_kernel *= -0.5 * (student_df + 1.0)
        return log_kernel
    log_kernel = np.einsum("ikj,ikj->ik", y, y)  # [n, K], q / df
    np.log1p(log_kernel, out=log_kernel)
    log_kernel *= -0.5 * (student_df + n_features)
    return log_kernel


def _estimate_log_student_t_kernel_far(
    X, means, whitening, covariance_type, student_df
):
    """Estimate the log Student-t kernel in log space, for rows far from the means.

    Far from the means q overflows, so :func:`_estimate_log_student_t_kernel`
    returns -inf or NaN although -(df + D) / 2 * log(1 + q / df) is finite.
    Dividing by s = max(max |x|, max |means|) bounds every term::

        y_k = (x / s - means[k] / s) @ W_k,     ||y_k||^2 = q_k / (df_k * s^2)
        log(1 + q_k / df_k) = logaddexp(0, 2 * log(s) + log ||y_k||^2)

    and for 'diag' the same per dimension, with log(q_d / df) = 2 * log(s |y_d|).

    NaN entries of `X` are missing features: the kernel is then that of the
    marginal t over the observed features o, with the same df and d_o in
    place of D. The offsets of missing features are set to 0, which drops
    their factors for 'diag' and 'spherical'; for 'full' and 'tied' q_o is
    the Schur complement of :func:`_missing_block_terms`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Float64 rows, finite or NaN, with at least one observed feature each.

    means : ndarray of shape (n_components, n_features)
        Float64 locations of the Student-t's.

    whitening : ndarray
        Float64 output of :func:`_compute_student_t_whitening`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    student_df : ndarray of shape (n_components,)
        Float64 degrees of freedom of the Student-t's.

    Returns
    -------
    log_kernel : ndarray of shape (n_samples, n_components)
        Float64 unnormalised log densities, as
        :func:`_estimate_log_student_t_kernel` would give without overflow.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    missing = np.isnan(X)  # [n, D]
    has_missing = missing.any()
    if has_missing:
        X = np.where(missing, 0.0, X)
    scale = np.maximum(np.max(np.abs(X), axis=1), np.max(np.abs(means)))  # [n]
    scale[scale == 0.0] = 1.0
    inv_scale = 1.0 / scale[:, None, None]  # [n, 1, 1]
    # Subtracting before whitening avoids inf - inf and the cancellation of
    # X @ W - means @ W; both terms are at most 1 in magnitude.
    centred = X[:, None, :] * inv_scale - means * inv_scale  # [n, K, D]
    if has_missing:
        centred[np.broadcast_to(missing[:, None, :], centred.shape)] = 0.0
    if covariance_type in ("full", "tied"):
        whitening = whitening.reshape(n_features, n_components, n_features)
        y = np.einsum("ikj,jkl->ikl", centred, whitening)  # [n, K, D]
    else:
        y = centred * whitening.reshape(n_components, n_features)  # [n, K, D]
    log_scale_sq = 2.0 * np.log(scale)[:, None]  # [n, 1]

    # log(0) = -inf where x equals a mean, and logaddexp(0, -inf) = 0.
    with np.errstate(divide="ignore"):
        if covariance_type == "diag":
            log_q = log_scale_sq[:, :, None] + 2.0 * np.log(np.abs(y))  # [n, K, D]
            log_kernel = np.logaddexp(0.0, log_q).sum(axis=2)  # [n, K]
            return -0.5 * (student_df + 1.0) * log_kernel
        q = np.einsum("ikj,ikj->ik", y, y)  # [n, K], q / (df s^2)
        if not has_missing:
            log_q = log_scale_sq + np.log(q)  # [n, K]
            return -0.5 * (student_df + n_features) * np.logaddexp(0.0, log_q)
        if covariance_type in ("full", "tied"):
            factors = np.moveaxis(whitening, 1, 0)  # [K, D, D]
            row_bytes = n_components * n_features * 8
            for rows, missing_index in _rows_by_n_missing(missing, row_bytes):
                factor_rows = _missing_rows_of(factors, missing_index)  # [n, K, r, D]
                q[rows] -= _missing_block_terms(factor_rows, y[rows])[0]
            # The Schur complement is >= 0; rounding may take it just below.
            np.maximum(q, 0.0, out=q)
        log_q = log_scale_sq + np.log(q)  # [n, K]
    n_observed = n_features - missing.sum(axis=1, keepdims=True)  # [n, 1]
    return -0.5 * (student_df + n_observed) * np.logaddexp(0.0, log_q)


def _estimate_log_marginal_student_t_prob(
    X,
    means,
    precisions_cholesky,
    whitening,
    covariance_type,
    student_df,
    scale_factor,
):
    """Estimate the log density of each row's marginal over its observed features.

    The marginal of St(mu, S, df) over the observed features o is
    St(mu_o, S_oo, df): the same df, the kernel of
    :func:`_estimate_log_student_t_kernel_far` and the normalising constant of
    :func:`_log_student_t_norm` with d_o features. A row with no observed
    feature has log density 0 (the marginal over nothing).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Float64 rows with NaN at missing features and no inf.

    means : ndarray of shape (n_components, n_features)
        Float64 locations of the Student-t's.

    precisions_cholesky : ndarray
        Float64 output of :func:`_compute_precision_cholesky`.

    whitening : ndarray
        Float64 output of :func:`_compute_student_t_whitening`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    student_df : ndarray of shape (n_components,)
        Float64 degrees of freedom of the Student-t's.

    scale_factor : ndarray of shape (n_components,)
        Output of :func:`_student_t_scale_factor`.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        Float64 log densities of the marginals.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    missing = np.isnan(X)  # [n, D]
    n_observed = n_features - missing.sum(axis=1)  # [n]
    log_prob = np.zeros((n_samples, n_components))
    seen_rows = np.flatnonzero(n_observed > 0)
    n_rows = _chunk_n_rows(n_components, n_features, 8)
    for start in range(0, seen_rows.shape[0], n_rows):
        rows = seen_rows[start : start + n_rows]
        log_kernel = _estimate_log_student_t_kernel_far(
            X[rows], means, whitening, covariance_type, student_df
        )  # [n, K]
        log_det_cholesky = _compute_log_det_cholesky(
            precisions_cholesky, covariance_type, n_features, missing=missing[rows]
        )  # [n, K]
        log_prob[rows] = log_kernel + _log_student_t_norm(
            student_df,
            scale_factor,
            log_det_cholesky,
            n_observed[rows, None],
            diag=covariance_type == "diag",
        )
    return log_prob


def _chunk_n_rows(n_components, n_features, itemsize):
    """Compute how many rows of X one chunk holds.

    Parameters
    ----------
    n_components : int
        Number of components K.

    n_features : int
        Number of features D.

    itemsize : int
        Bytes per element of the computation dtype.

    Returns
    -------
    n_rows : int
        _CHUNK_BYTES // (K * D * itemsize), and at least _MIN_CHUNK_ROWS.
    """
    row_bytes = n_components * n_features * itemsize
    return max(_MIN_CHUNK_ROWS, _CHUNK_BYTES // max(row_bytes, 1), 1)


def _estimate_log_student_t_prob(
    X,
    means,
    precisions_cholesky,
    covariance_type,
    mean_precision,
    degrees_of_freedom,
):
    """Estimate the log posterior predictive density of each component.

    Integrating out the Gaussian-Wishart (or Gaussian-Gamma) posterior of
    component k gives a Student-t::

        p_k(x) = St(x | means[k], c_k * covariances_[k], df_k)

        'full', 'tied' : df_k = nu_k + 1 - D, c_k = nu_k (1 + beta_k) / (beta_k df_k)
        'diag'         : product over d of univariate t's, df_k = nu_k,
                         c_k = (1 + beta_k) / beta_k
        'spherical'    : isotropic D-variate t, df_k = D nu_k,
                         c_k = (1 + beta_k) / beta_k

    NaN entries of `X` are missing features: such a row is scored under the
    marginal of each p_k over its observed features o, St(x_o | means[k]_o,
    c_k * covariances_[k]_oo, df_k) with the same df_k (for 'diag' the
    missing factors drop out), and a row with no observed feature has log
    density 0. Complete rows never reach that path.

    Rows of `X` are processed in chunks so that the temporaries stay near
    `_CHUNK_BYTES`, whatever `n_samples`. Rows so far from the means that q
    overflows are recomputed in log space, where the density is still finite::

        log p_k(x) ~ log Z_k - (df_k + D) / 2 * log(q_k / df_k)   as q_k -> inf

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Input data, with NaN at missing features.

    means : array-like of shape (n_components, n_features)
        Posterior means of the components.

    precisions_cholesky : array-like
        Cholesky factors of the precisions, as returned by
        :func:`_compute_precision_cholesky` from ``covariances_``:

        - 'full' : shape of (n_components, n_features, n_features)
        - 'tied' : shape of (n_features, n_features)
        - 'diag' : shape of (n_components, n_features)
        - 'spherical' : shape of (n_components,)

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    mean_precision : array-like of shape (n_components,)
        Precision scale beta of the posterior on the means.

    degrees_of_freedom : array-like of shape (n_components,) or float
        Degrees of freedom nu of the Wishart or Gamma posterior; a float is
        accepted for 'tied'.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        Log predictive density of each component at each row of `X`, in the
        dtype ``np.result_type(X, means)``.
    """
    X = np.asarray(X)
    means = np.asarray(means)
    dtype = np.result_type(X, means)
    X = X.astype(dtype, copy=False)
    means = means.astype(dtype, copy=False)
    precisions_cholesky = np.asarray(precisions_cholesky, dtype=np.float64)
    n_samples, n_features = X.shape
    n_components = means.shape[0]

    # Per-component constants in float64: gammaln((df + D) / 2) - gammaln(df / 2)
    # cancels badly in float32 once df is in the thousands.
    nu = np.broadcast_to(
        np.asarray(degrees_of_freedom, dtype=np.float64), (n_components,)
    )
    student_df = _student_t_degrees_of_freedom(nu, covariance_type, n_features)
    scale_factor = _student_t_scale_factor(
        mean_precision, nu, student_df, covariance_type
    )
    log_det_cholesky = np.broadcast_to(
        _compute_log_det_cholesky(precisions_cholesky, covariance_type, n_features),
        (n_components,),
    )
    log_norm = _log_student_t_norm(
        student_df,
        scale_factor,
        log_det_cholesky,
        n_features,
        diag=covariance_type == "diag",
    ).astype(dtype)

    means_64 = means.astype(np.float64)
    whitening_64, whitened_means = _compute_student_t_whitening(
        means_64, precisions_cholesky, covariance_type, student_df, scale_factor
    )
    whitening = whitening_64.astype(dtype)
    whitened_means = whitened_means.astype(dtype)
    student_df_64 = student_df
    student_df = student_df.astype(dtype)

    log_prob = np.empty((n_samples, n_components), dtype=dtype)
    incomplete_rows = None
    n_rows = _chunk_n_rows(n_components, n_features, dtype.itemsize)
    # Rows whose q overflows are recomputed below, so their overflow is expected.
    with np.errstate(over="ignore", invalid="ignore"):
        for rows in gen_batches(n_samples, n_rows):
            log_prob[rows] = _estimate_log_student_t_kernel(
                X[rows], whitening, whitened_means, covariance_type, student_df
            )
        # The kernel is <= 0, so its minimum is -inf or NaN exactly when some
        # entry is; one np.min keeps the common path as fast as before, and
        # rows with missing features (NaN) are only looked for past it.
        if not np.isfinite(log_prob.min()):
            is_finite = np.isfinite(X)  # [n, D]
            # Rows with an inf stay as the fast path left them.
            incomplete_rows = np.flatnonzero(
                ~is_finite.all(axis=1) & ~np.isinf(X).any(axis=1)
            )
            incomplete_log_prob = _estimate_log_marginal_student_t_prob(
                X[incomplete_rows].astype(np.float64),
                means_64,
                precisions_cholesky,
                whitening_64,
                covariance_type,
                student_df_64,
                scale_factor,
            )
            far_rows = np.flatnonzero(
                ~np.isfinite(log_prob).all(axis=1) & is_finite.all(axis=1)
            )
            n_rows_64 = _chunk_n_rows(n_components, n_features, 8)
            for start in range(0, far_rows.shape[0], n_rows_64):
                rows = far_rows[start : start + n_rows_64]
                log_prob[rows] = _estimate_log_student_t_kernel_far(
                    X[rows].astype(np.float64),
                    means_64,
                    whitening_64,
                    covariance_type,
                    student_df_64,
                )
    log_prob += log_norm
    # Their normalising constants differ, so they are written after the others'.
    if incomplete_rows is not None:
        log_prob[incomplete_rows] = incomplete_log_prob
    return log_prob


def _estimate_log_prob_resp(weighted_log_prob):
    """Normalise weighted log densities into log responsibilities.

    Parameters
    ----------
    weighted_log_prob : ndarray of shape (n_samples, n_components)
        log(weights_[k]) + log p_k(x) for each sample and component.

    Returns
    -------
    log_prob_norm : ndarray of shape (n_samples,)
        log p(x) = logsumexp over components of `weighted_log_prob`.

    log_resp : ndarray of shape (n_samples, n_components)
        Log posterior probability of each component given each sample.
    """
    log_prob_norm = logsumexp(weighted_log_prob, axis=1)  # [n_samples]
    log_resp = weighted_log_prob - log_prob_norm[:, np.newaxis]
    return log_prob_norm, log_resp


def _sample_student_t_mixture(
    rng,
    n_samples,
    weights,
    means,
    covariances,
    covariance_type,
    mean_precision,
    degrees_of_freedom,
):
    """Draw samples from the posterior predictive Student-t mixture.

    Parameters
    ----------
    rng : numpy.random.RandomState
        Source of randomness.

    n_samples : int
        Number of samples to draw.

    weights : array-like of shape (n_components,)
        Mixture weights.

    means : array-like of shape (n_components, n_features)
        Locations of the Student-t's.

    covariances : array-like
        ``covariances_`` of the fitted model; shape depends on
        `covariance_type` as in :func:`_compute_precision_cholesky`.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    mean_precision : array-like of shape (n_components,)
        Precision scale beta of the posterior on the means.

    degrees_of_freedom : array-like of shape (n_components,) or float
        Degrees of freedom nu of the Wishart or Gamma posterior.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Float64 samples, grouped by component in component order.

    y : ndarray of shape (n_samples,)
        Int64 component label of each sample.
    """
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    n_components, n_features = means.shape
    nu = np.broadcast_to(
        np.asarray(degrees_of_freedom, dtype=np.float64), (n_components,)
    )
    student_df = _student_t_degrees_of_freedom(nu, covariance_type, n_features)
    scale_factor = _student_t_scale_factor(
        mean_precision, nu, student_df, covariance_type
    )

    # float32 weights can sum past 1 in float64, which multinomial rejects.
    counts = rng.multinomial(n_samples, weights / weights.sum())
    X = np.empty((n_samples, n_features), dtype=np.float64)
    start = 0
    for k, count in enumerate(counts):
        covariance = covariances if covariance_type == "tied" else covariances[k]
        X[start : start + count] = means[k] + _sample_centred_student_t(
            rng,
            count,
            scale_factor[k] * covariance,
            covariance_type,
            student_df[k],
            n_features,
        )
        start += count
    y = np.repeat(np.arange(n_components, dtype=np.int64), counts)
    return X, y


def _sample_centred_student_t(rng, n_samples, scale, covariance_type, df, n_features):
    """Draw samples from one zero-location Student-t.

    A multivariate t is a Gaussian whose precision is scaled by g / df with
    g ~ chi2(df)::

        x = scale^(1/2) @ z / sqrt(g / df),   z ~ N(0, I)

    For 'diag' every dimension has its own g (independent univariate t's).

    Parameters
    ----------
    rng : numpy.random.RandomState
        Source of randomness.

    n_samples : int
        Number of samples to draw.

    scale : ndarray
        Scale of the t: (n_features, n_features) for 'full' and 'tied',
        (n_features,) variances for 'diag', a float variance for 'spherical'.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.

    df : float
        Degrees of freedom of the t.

    n_features : int
        Number of features.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Float64 samples.
    """
    if covariance_type == "diag":
        return np.sqrt(scale) * rng.standard_t(df, size=(n_samples, n_features))
    z = rng.standard_normal(size=(n_samples, n_features))  # [n, D]
    if covariance_type in ("full", "tied"):
        # A symmetric square root rather than a Cholesky factor: a float32 fit of
        # nearly collinear data can give a scale that is PD only up to rounding.
        eigenvalues, eigenvectors = np.linalg.eigh(scale)
        z = (z * np.sqrt(np.maximum(eigenvalues, 0.0))) @ eigenvectors.T
    else:
        z *= np.sqrt(scale)
    return z / np.sqrt(rng.chisquare(df, size=n_samples) / df)[:, np.newaxis]
