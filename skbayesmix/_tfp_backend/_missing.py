"""The E-step and statistics of rows with missing entries, integrated out exactly.

q(z, x_miss) = q(z) q(x_miss | z) with x_miss latent (missing at random). Under
q(theta), with A_k = E[Lambda_k] and delta = x - m_k, the optimal factor is

    q(x_m | z = k) = N(m_k,m - A_mm^-1 A_mo delta_o, A_mm^-1)

and, with r missing features,

    log rho_nk = offset_k + r log(2 pi) / 2 - log|A_mm| / 2
                 - delta_o^T (A_oo - A_om A_mm^-1 A_mo) delta_o / 2.

The statistics are expectations under q(x_m | z): each row completed by its
conditional mean under each component, the second moment carrying the
conditional covariance A_mm^-1, so that the q(theta) update stays exact
coordinate ascent. The entropy of q(x_m | z),
sum_nk w_n r_nk (r (1 + log 2 pi) - log|A_mm|) / 2, is added to the entropy
term of the statistics, so the ELBO stays a true lower bound.

For 'diag' and 'spherical' A is diagonal: A_mo = 0, the completion is m_k,m.
With delta_m = 0, A_mo delta_o = (A delta)_m, so the Schur term needs only the
small r x r block A_mm per (row, component), gathered and factored in batches
of rows that share r (see `skbayesmix._missing.split_incomplete`).
"""

import math
from typing import Any, NamedTuple

import tensorflow as tf

from skbayesmix._state import COVARIANCE_STRUCTURES, Statistics
from skbayesmix._tfp_backend._statistics import (
    _weighted_responsibilities,
    design_layout,
    mahalanobis_coefficients,
    transposed_design,
    unpack_statistics,
)

_LOG_2PI = math.log(2.0 * math.pi)
# The design of 'full' and 'tied' is the same: only the family matters to it.
_WISHART = COVARIANCE_STRUCTURES["full"]


class _WishartTerms(NamedTuple):
    """What every block of a Wishart's incomplete E-step reads, once per pass.

    precision : Tensor of shape (n_components, n_features, n_features)
        A_k = E[Lambda_k].
    stacked : Tensor of shape (n_features, n_components * n_features)
        [A_1, ..., A_K]: x @ stacked is every A_k x in one GEMM.
    precision_means : Tensor of shape (n_components, n_features)
        A_k m_k.
    coefficients : Tensor of shape (n_components, n_design)
        `mahalanobis_coefficients`: the quadratic of the zero-filled row.
    layout : DesignLayout
    """

    precision: Any
    stacked: Any
    precision_means: Any
    coefficients: Any
    layout: Any


def _wishart_terms(posterior, moments, structure):
    means = posterior.means
    n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
    precision = tf.broadcast_to(
        moments.expected_precision, [n_components, n_features, n_features]
    )
    layout = design_layout(n_features, structure)
    return _WishartTerms(
        precision,
        tf.reshape(tf.transpose(precision, [1, 0, 2]), [n_features, -1]),
        tf.einsum("kde,ke->kd", precision, means),
        mahalanobis_coefficients(means, moments, structure, layout),
        layout,
    )


def _missing_blocks(precision, patterns):
    """A_mm of each pattern and component: shape (n_patterns, n_components, r, r)."""
    n_components, n_features = tf.shape(precision)[0], tf.shape(precision)[1]
    n_patterns, n_missing = tf.shape(patterns)[0], tf.shape(patterns)[1]
    pairs = patterns[:, :, None] * n_features + patterns[:, None, :]  # [p, r, r]
    block = tf.gather(
        tf.reshape(precision, [n_components, -1]),
        tf.reshape(pairs, [n_patterns, -1]),
        axis=1,
    )  # [k, p, r * r]
    return tf.transpose(
        tf.reshape(block, [n_components, n_patterns, n_missing, n_missing]),
        [1, 0, 2, 3],
    )


def _of_components(vectors, index):
    """vectors[k, index[..., i]] for every k: shape index.shape[:1] + (K,) + rest."""
    return tf.transpose(tf.gather(vectors, index, axis=1), [1, 0, 2])


def _wishart_block_sums(
    values, weights, missing, pattern, patterns, means, offset, terms, design
):
    """The E-step and sums of one block of rows that miss r features each.

    With x~ the row with 0 at its missing features m, delta = x~ - m_k off m
    and 0 on m, v = (A x~)_m, u = (A delta)_m = v + A_mm m_m - (A m)_m and

        delta^T A delta = (x~ - m)^T A (x~ - m) + 2 m_m . (v - (A m)_m)
                          + m_m^T A_mm m_m,

    the first term from the complete rows' design GEMM of x~. The conditional
    mean of x_m is t = m_m - A_mm^-1 u, so the completed row is x~ + t on m and
    its second moment x~ x~^T + x~ t^T + t x~^T + (t t^T + A_mm^-1) on m x m:
    the design GEMM again, one GEMM of x~ against the spread w r t, and sums of
    small r x r terms. A_mm, its factor and its inverse are per pattern.

    `design` is the block's rows of `incomplete_design`, or None to build it.

    Returns
    -------
    design_sums : Tensor of shape (n_design, n_components)
    first_moment : Tensor of shape (n_components, n_features)
        sum_n w_n r_nk t_nk, spread onto the missing features.
    second_moment : Tensor of shape (n_components, n_features, n_features)
        The cross and m x m terms.
    entropy : scalar Tensor
        Of q(z) and of q(x_m | z).
    """
    x = tf.cast(values, tf.float64)  # [b, d]
    filled = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
    n_block, n_features = tf.shape(x)[0], tf.shape(x)[1]
    n_components = tf.shape(means)[0]
    n_missing = tf.shape(missing)[1]
    # Per pattern and component: A_mm, its Cholesky factor, log |A_mm|, A_mm^-1.
    block = _missing_blocks(terms.precision, patterns)  # [p, k, r, r]
    chol = tf.linalg.cholesky(block)
    log_det = 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)
    identity = tf.eye(n_missing, batch_shape=tf.shape(block)[:2], dtype=tf.float64)
    inverse = tf.gather(
        tf.linalg.cholesky_solve(chol, identity), pattern
    )  # [b, k, r, r]
    mean_missing = _of_components(means, patterns)  # [p, k, r]
    block_mean = tf.reduce_sum(block * mean_missing[:, :, None, :], axis=-1)  # A_mm m_m
    precision_means = _of_components(terms.precision_means, patterns)  # (A m)_m
    pattern_quadratic = tf.reduce_sum(mean_missing * block_mean, axis=-1)  # [p, k]
    # Per row.
    product = tf.reshape(
        tf.linalg.matmul(filled, terms.stacked), [n_block, n_components, n_features]
    )  # A_k x~
    # (A_k x~)_m as one flat gather: a batched gather measured 20 times slower.
    columns = tf.range(n_components)[None, :, None] * n_features + missing[:, None, :]
    cells = tf.range(n_block)[:, None, None] * (n_components * n_features) + columns
    v = tf.gather(tf.reshape(product, [-1]), cells)  # [b, k, r]
    mean_missing, log_det = (
        tf.gather(mean_missing, pattern),
        tf.gather(log_det, pattern),
    )
    u = v + tf.gather(block_mean - precision_means, pattern)
    solved = tf.reduce_sum(inverse * u[:, :, None, :], axis=-1)  # A_mm^-1 u
    if design is None:
        design = incomplete_design(filled, terms.layout)  # [b, m]
    quadratic = (
        tf.linalg.matmul(design, terms.coefficients, transpose_b=True)
        + 2.0
        * tf.reduce_sum(mean_missing * (v - tf.gather(precision_means, pattern)), -1)
        + tf.gather(pattern_quadratic, pattern)
        - tf.reduce_sum(u * solved, axis=-1)
    )  # [b, k]: delta_o^T (A / A_mm) delta_o
    r = tf.cast(n_missing, tf.float64)
    log_rho = offset[None] + 0.5 * (r * _LOG_2PI - log_det - quadratic)
    weighted_resp, entropy = _weighted_responsibilities(tf.transpose(log_rho), weights)
    completion_entropy = 0.5 * (r * (1.0 + _LOG_2PI) - log_det)  # [b, k]
    entropy += tf.reduce_sum(tf.transpose(weighted_resp) * completion_entropy)
    resp = tf.transpose(weighted_resp)  # [b, k]
    completion = mean_missing - solved  # t, [b, k, r]
    spread = resp[:, :, None] * completion
    # The spread onto the missing features, as a batch of [k, r] x [r, d]
    # products: scatter_nd and a segment sum each took several times as long.
    placing = tf.one_hot(missing, n_features, dtype=tf.float64)  # [b, r, d]
    spread_rows = tf.reshape(
        tf.linalg.matmul(spread, placing), [n_block, n_components * n_features]
    )  # [b, k * d]
    cross = tf.transpose(
        tf.reshape(
            tf.linalg.matmul(filled, spread_rows, transpose_a=True),
            [n_features, n_components, n_features],
        ),
        [1, 0, 2],
    )  # sum_n w r x~ t^T, [k, d, d]
    squares = resp[:, :, None, None] * (
        completion[:, :, :, None] * completion[:, :, None, :] + inverse
    )  # [b, k, r, r]
    pairs = (
        columns[:, :, :, None] * n_features + missing[:, None, None, :]
    )  # (k * d + m_i) * d + m_j
    square_sums = tf.reshape(
        tf.math.unsorted_segment_sum(
            tf.reshape(squares, [-1]),
            tf.reshape(pairs, [-1]),
            n_components * n_features * n_features,
        ),
        [n_components, n_features, n_features],
    )
    first_moment = tf.reshape(
        tf.math.unsorted_segment_sum(
            tf.reshape(spread, [-1]),
            tf.reshape(columns, [-1]),
            n_components * n_features,
        ),
        [n_components, n_features],
    )
    second_moment = cross + tf.transpose(cross, [0, 2, 1]) + square_sums
    design_sums = tf.linalg.matmul(
        design, weighted_resp, transpose_a=True, transpose_b=True
    )  # [m, k]
    return design_sums, first_moment, second_moment, entropy


def incomplete_design(values, layout):
    """The design of the rows with 0 at their missing features, one row per row.

    Row-major, unlike the complete rows' transposed design: a block of rows is
    then a contiguous slice of a held design.

    Parameters
    ----------
    values : Tensor of shape (n_rows, n_features)
        Rows with NaN (or already 0) at missing features.
    layout : DesignLayout

    Returns
    -------
    design : float64 Tensor of shape (n_rows, n_design)
    """
    x = tf.cast(values, tf.float64)
    filled = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
    return tf.transpose(transposed_design(filled, _WISHART, layout))


def _wishart_statistics(incomplete, posterior, moments, offset, structure, design):
    """`incomplete_statistics` of a Wishart ('full', 'tied'), by blocks."""
    values, weights, missing, pattern, patterns, blocks = incomplete
    terms = _wishart_terms(posterior, moments, structure)
    n_components, n_features = (
        tf.shape(posterior.means)[0],
        tf.shape(posterior.means)[1],
    )
    zeros = (
        tf.zeros([tf.shape(terms.coefficients)[1], n_components], tf.float64),
        tf.zeros([n_components, n_features], tf.float64),
        tf.zeros([n_components, n_features, n_features], tf.float64),
        tf.constant(0.0, tf.float64),
    )

    def add_block(block, totals):
        start, size, n_missing, first_pattern, n_patterns = tf.unstack(blocks[block])
        sums = _wishart_block_sums(
            tf.slice(values, [start, 0], [size, -1]),
            tf.slice(weights, [start], [size]),
            tf.slice(missing, [start, 0], [size, n_missing]),
            tf.slice(pattern, [start], [size]) - first_pattern,
            tf.slice(patterns, [first_pattern, 0], [n_patterns, n_missing]),
            posterior.means,
            offset,
            terms,
            None if design is None else tf.slice(design, [start, 0], [size, -1]),
        )
        return block + 1, tf.nest.map_structure(tf.add, totals, sums)

    _, (design_sums, first_extra, second_extra, entropy) = tf.while_loop(
        lambda block, totals: block < tf.shape(blocks)[0],
        add_block,
        (tf.constant(0), zeros),
        parallel_iterations=1,
    )
    statistics = unpack_statistics(
        design_sums, entropy, n_features, structure, terms.layout
    )
    if structure.shared:
        second_extra = tf.reduce_sum(second_extra, axis=0, keepdims=True)
    return Statistics(
        statistics.counts,
        statistics.first_moment + first_extra,
        statistics.second_moment + second_extra,
        statistics.resp_entropy,
    )


def _gamma_block_statistics(values, weights, posterior, moments, offset, structure):
    """Statistics (with the entropy of q(z) and of q(x_m | z)) of one block.

    For 'diag' and 'spherical' A is diagonal: the completion is m_k,m and the
    conditional covariance the inverse of A on m.
    """
    x = tf.cast(values, tf.float64)  # [b, d]
    is_observed = tf.logical_not(tf.math.is_nan(x))
    filled = tf.where(is_observed, x, tf.zeros_like(x))
    observed = tf.cast(is_observed, tf.float64)
    means = posterior.means  # [k, d]
    n_features = tf.shape(means)[1]
    precision = moments.expected_precision
    if structure.scale_inverse_rank == 0:
        precision = tf.broadcast_to(precision[:, None], tf.shape(means))
    squares = observed[:, None, :] * tf.square(filled[:, None, :] - means[None])
    quadratic = tf.einsum("bkd,kd->bk", squares, precision)
    log_det = tf.einsum("bd,kd->bk", 1.0 - observed, tf.math.log(precision))
    completed = filled[:, None, :] + (1.0 - observed)[:, None, :] * means[None]
    conditional = (1.0 - observed)[:, None, :] / precision[None]  # [b, k, d]
    n_missing = tf.reduce_sum(1.0 - observed, axis=1)[:, None]  # [b, 1]
    log_rho = offset[None] + 0.5 * (n_missing * _LOG_2PI - log_det - quadratic)
    weighted_resp, entropy = _weighted_responsibilities(tf.transpose(log_rho), weights)
    weighted_resp = tf.transpose(weighted_resp)  # [b, k]
    completion_entropy = 0.5 * (n_missing * (1.0 + _LOG_2PI) - log_det)  # [b, k]
    entropy += tf.reduce_sum(weighted_resp * completion_entropy)
    counts = tf.reduce_sum(weighted_resp, axis=0)  # [k]
    first_moment = tf.einsum("bk,bkd->kd", weighted_resp, completed)
    weighted = completed * weighted_resp[:, :, None]  # [b, k, d]
    second_moment = tf.reduce_sum(
        weighted * completed + conditional * weighted_resp[:, :, None], axis=0
    )  # [k, d]
    if structure.scale_inverse_rank == 0:
        second_moment = tf.reduce_sum(second_moment, axis=1) / tf.cast(
            n_features, tf.float64
        )
    return Statistics(counts, first_moment, second_moment, entropy)


def incomplete_statistics(
    incomplete, posterior, moments, offset, structure, design=None
):
    """E-step under q(theta), then the statistics, over rows with missing entries.

    Parameters
    ----------
    incomplete : IncompleteRows of Tensors
        See `skbayesmix._missing.IncompleteRows`.
    posterior : Posterior of float64 Tensors
    moments : PrecisionMoments of `posterior`
    offset : Tensor of shape (n_components,)
        `log_rho_offset` of `posterior`.
    structure : CovarianceStructure
    design : Tensor of shape (n_rows, n_design), default=None
        `incomplete_design` of the rows, for a Wishart, when the caller holds
        it across iterations; otherwise each block builds its own.

    Returns
    -------
    statistics : Statistics
        float64; its entropy term includes that of q(x_m | z).
    """
    if structure.family == "wishart":
        return _wishart_statistics(
            incomplete, posterior, moments, offset, structure, design
        )
    values, weights, _, _, _, blocks = incomplete
    n_components, n_features = (
        tf.shape(posterior.means)[0],
        tf.shape(posterior.means)[1],
    )
    zeros = Statistics(
        tf.zeros([n_components], tf.float64),
        tf.zeros([n_components, n_features], tf.float64),
        _second_moment_like(n_components, n_features, structure),
        tf.constant(0.0, tf.float64),
    )

    def add_block(block, totals):
        start, size = blocks[block][0], blocks[block][1]
        stats = _gamma_block_statistics(
            tf.slice(values, [start, 0], [size, -1]),
            tf.slice(weights, [start], [size]),
            posterior,
            moments,
            offset,
            structure,
        )
        return block + 1, tf.nest.map_structure(tf.add, totals, stats)

    _, totals = tf.while_loop(
        lambda block, totals: block < tf.shape(blocks)[0],
        add_block,
        (tf.constant(0), zeros),
        parallel_iterations=1,
    )
    return totals


def _second_moment_like(n_components, n_features, structure):
    """A zero second moment in the structure's shape."""
    if structure.family == "wishart":
        n_factors = 1 if structure.shared else n_components
        return tf.zeros([n_factors, n_features, n_features], tf.float64)
    if structure.scale_inverse_rank == 1:
        return tf.zeros([n_components, n_features], tf.float64)
    return tf.zeros([n_components], tf.float64)
