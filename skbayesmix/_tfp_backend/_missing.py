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

For a Wishart, two kinds of blocks (see `skbayesmix._missing.split_incomplete`):

- A block of one pattern runs as complete data: the design of the rows with 0
  at m and its two GEMMs, under the Schur complement placed in D x D, then the
  statistics mapped to those of the completed rows, which are affine in the
  zero-filled ones (`_PatternMaps`). Its r x r algebra runs once per pattern.
- A block of many patterns that share r: with delta_m = 0,
  A_mo delta_o = (A delta)_m, so the Schur term needs only the small r x r
  block A_mm, factored once per pattern and component. The rows pass through
  two GEMMs, A x for every component and the second moments, and through
  gathers and sums of [rows, K, r] terms.

Measured on 1e5 x 16, K = 8 'full', 10% MCAR (benchmark row m,
``benchmarks/bench_missing_pass.py``), one pass over the 81,000 incomplete
rows: 0.115 s in mixed blocks only, 0.096 s with the 32,700 rows missing one
feature and the 27,300 missing two in blocks of one pattern (0.45 and 0.9 us
per row, against 0.8 and 1.2 us in mixed blocks). In mixed blocks TF's float64
ops over [rows, K, r] and [rows, K, r, r] cost about as much as the GEMMs; a
per-row batched Cholesky, a batched gather and scatter_nd each measured 5-20
times slower still.
"""

import math
from typing import Any, NamedTuple

import tensorflow as tf

from skbayesmix._state import COVARIANCE_STRUCTURES, Statistics
from skbayesmix._tfp_backend._statistics import (
    _design_sums,
    _weighted_responsibilities,
    design_layout,
    log_rho_coefficients_of,
    mahalanobis_coefficients,
    transposed_design,
    unpack_statistics,
)

_LOG_2PI = math.log(2.0 * math.pi)

# Most elements of one [patterns, K, D, D] array of `_PatternMaps` built at once
# (8 MB in float64; a few such arrays live together): at D = 32, K = 16, 64
# patterns per chunk.
_PATTERN_MAPS_ELEMENTS = 2**20


class _WishartTerms(NamedTuple):
    """What every block of a Wishart's incomplete E-step reads, once per pass.

    precision : Tensor of shape (n_components, n_features, n_features)
        A_k = E[Lambda_k].
    stacked : Tensor of shape (n_features, n_components * n_features)
        [A_1, ..., A_K]: x @ stacked is every A_k x in one GEMM.
    precision_means : Tensor of shape (n_components, n_features)
        A_k m_k.
    mean_quadratic : Tensor of shape (n_components,)
        m_k^T A_k m_k.
    """

    precision: Any
    stacked: Any
    precision_means: Any
    mean_quadratic: Any


def _wishart_terms(posterior, moments):
    means = posterior.means
    n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
    precision = tf.broadcast_to(
        moments.expected_precision, [n_components, n_features, n_features]
    )
    precision_means = tf.einsum("kde,ke->kd", precision, means)
    return _WishartTerms(
        precision,
        tf.reshape(tf.transpose(precision, [1, 0, 2]), [n_features, -1]),
        precision_means,
        tf.reduce_sum(precision_means * means, axis=1),
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


def _zero_filled(values):
    """Rows in float64 with 0 at their missing entries: x~."""
    x = tf.cast(values, tf.float64)
    return tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)


def _pattern_cells(patterns, n_components, n_features):
    """Flat indices of each pattern's missing entries, for every component.

    Returns
    -------
    columns : int32 Tensor of shape (n_patterns, n_components, r)
        k D + m_i: the entries (k, m_i) of a [K, D] array.
    pairs : int32 Tensor of shape (n_patterns, n_components, r, r)
        (k D + m_i) D + m_j: the entries (k, m_i, m_j) of a [K, D, D] array.
    """
    columns = tf.range(n_components)[None, :, None] * n_features + patterns[:, None, :]
    return columns, columns[:, :, :, None] * n_features + patterns[:, None, None, :]


def _wishart_block_sums(values, weights, pattern, patterns, means, offset, terms):
    """The E-step and statistics of one block of rows that miss r features each.

    With x~ the row with 0 at its missing features m, delta = x~ - m_k off m
    and 0 on m, P = A x~ (one GEMM for all k), v = P_m,
    u = (A delta)_m = v + A_mm m_m - (A m)_m and

        delta^T A delta = (x~ - 2 m)^T P + m^T A m + 2 m_m . v
                          + m_m^T A_mm m_m - 2 m_m . (A m)_m,

    the last two terms per pattern. The conditional mean of x_m is
    t = m_m - A_mm^-1 u; with e the row that holds t on m and 0 elsewhere, the
    completed row is x~ + e, and

        sum_n w r (x~ + e)(x~ + e)^T = sym(sum_n x~ [w r (x~ + 2 e)]^T)
                                       + sum_n w r (t t^T + A_mm^-1) on m x m,

    the first term one GEMM, the second a sum of small r x r terms. The rows
    of a block are sorted by pattern (`skbayesmix._missing.split_incomplete`):
    everything that depends on the pattern only (A_mm, its factor and inverse,
    and where its entries go in [K, D, D]) is computed per pattern, and the
    r x r terms are summed per pattern before they are placed, since
    per-row index arithmetic and scatters over [rows, K, r, r] cost more than
    the GEMMs.

    Returns
    -------
    statistics : Statistics
        Of this block, not summed over components for 'tied'; the entropy is
        that of q(z) and of q(x_m | z).
    """
    filled = _zero_filled(values)  # [b, d]
    n_block, n_features = tf.shape(filled)[0], tf.shape(filled)[1]
    n_components = tf.shape(means)[0]
    n_missing = tf.shape(patterns)[1]
    r = tf.cast(n_missing, tf.float64)
    # Per pattern and component: A_mm, its Cholesky factor, log |A_mm|, A_mm^-1.
    block = _missing_blocks(terms.precision, patterns)  # [p, k, r, r]
    chol = tf.linalg.cholesky(block)
    log_det = 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)
    inverse = tf.linalg.cholesky_solve(
        chol, tf.eye(n_missing, batch_shape=tf.shape(block)[:2], dtype=tf.float64)
    )
    mean_missing = _of_components(means, patterns)  # m_m, [p, k, r]
    block_mean = tf.reduce_sum(block * mean_missing[:, :, None, :], axis=-1)
    precision_means = _of_components(terms.precision_means, patterns)  # (A m)_m
    # The pattern's part of log rho: r log(2 pi) - log |A_mm| less its part of
    # delta^T A delta, halved.
    pattern_log_rho = 0.5 * (
        r * _LOG_2PI
        - log_det
        - tf.reduce_sum(mean_missing * (block_mean - 2.0 * precision_means), axis=-1)
    )  # [p, k]
    columns, pairs = _pattern_cells(patterns, n_components, n_features)
    # Per row.
    product = tf.linalg.matmul(filled, terms.stacked)  # A_k x~, [b, k * d]
    # P_m as one flat gather: a batched gather measured 20 times slower.
    cells = tf.range(n_block)[:, None] * (n_components * n_features) + tf.gather(
        tf.reshape(columns, [tf.shape(columns)[0], -1]), pattern
    )
    v = tf.reshape(
        tf.gather(tf.reshape(product, [-1]), cells),
        [n_block, n_components, n_missing],
    )  # [b, k, r]
    mean_missing = tf.gather(mean_missing, pattern)
    u = v + tf.gather(block_mean - precision_means, pattern)
    solved = tf.reduce_sum(
        tf.gather(inverse, pattern) * u[:, :, None, :], axis=-1
    )  # A_mm^-1 u
    # [b, k * d] operands of one shape: TF's broadcasting products over
    # [b, k, d] took several times as long as these plain ones.
    tiled = tf.tile(filled, [1, n_components])  # x~ for every k
    quadratic = (
        tf.reduce_sum(
            tf.reshape(tiled * product, [n_block, n_components, n_features]),
            axis=-1,
        )
        - 2.0 * tf.linalg.matmul(filled, terms.precision_means, transpose_b=True)
        + terms.mean_quadratic[None]
        + tf.reduce_sum(2.0 * mean_missing * v - u * solved, axis=-1)
    )  # [b, k]: delta_o^T (A / A_mm) delta_o less the pattern's part
    log_rho = offset[None] + tf.gather(pattern_log_rho, pattern) - 0.5 * quadratic
    resp, entropy = _weighted_responsibilities(log_rho, weights, axis=1)  # w r
    pattern_resp = tf.math.segment_sum(resp, pattern)  # [p, k]
    entropy += tf.reduce_sum(pattern_resp * 0.5 * (r * (1.0 + _LOG_2PI) - log_det))
    completion = mean_missing - solved  # t, [b, k, r]
    spread = resp[:, :, None] * completion  # w r t
    # w r e, placed as a batch of [k, r] x [r, d] products: scatter_nd and a
    # segment sum each took several times as long.
    placing = tf.one_hot(tf.gather(patterns, pattern), n_features, dtype=tf.float64)
    doubled = tf.repeat(resp, n_features, axis=1) * tiled + 2.0 * tf.reshape(
        tf.linalg.matmul(spread, placing), [n_block, -1]
    )  # w r (x~ + 2 e), [b, k * d]
    # With a column of ones, the GEMM's last row is sum_n w r (x~ + 2 e).
    sums = tf.linalg.matmul(
        tf.concat([filled, tf.ones([n_block, 1], tf.float64)], axis=1),
        doubled,
        transpose_a=True,
    )
    moments = tf.transpose(
        tf.reshape(sums[:-1], [n_features, n_components, n_features]), [1, 0, 2]
    )  # [k, d, d]
    pattern_squares = (
        tf.math.segment_sum(spread[:, :, :, None] * completion[:, :, None, :], pattern)
        + pattern_resp[:, :, None, None] * inverse
    )  # sum_n w r (t t^T + A_mm^-1) per pattern, [p, k, r, r]
    square_sums = tf.reshape(
        tf.math.unsorted_segment_sum(
            tf.reshape(pattern_squares, [-1]),
            tf.reshape(pairs, [-1]),
            n_components * n_features * n_features,
        ),
        [n_components, n_features, n_features],
    )
    first_moment = tf.reshape(
        sums[-1]
        - tf.math.unsorted_segment_sum(
            tf.reshape(tf.math.segment_sum(spread, pattern), [-1]),
            tf.reshape(columns, [-1]),
            n_components * n_features,
        ),
        [n_components, n_features],
    )  # sum_n w r (x~ + e)
    second_moment = 0.5 * (moments + tf.transpose(moments, [0, 2, 1])) + square_sums
    return Statistics(tf.reduce_sum(resp, axis=0), first_moment, second_moment, entropy)


class _PatternMaps(NamedTuple):
    """What a block of rows that share one pattern reads, per pattern and component.

    Such a block runs as complete data, through `_statistics`'s design and its
    two GEMMs, on x~ (the rows with 0 at their missing features m) under the
    Schur complement S = A_oo - A_om A_mm^-1 A_mo, placed in D x D with zeros
    on m. With Q = A_mm^-1 placed on m x m and o the observed features, the
    completed rows are affine in x~:

        c = M x~ + g,  M = I - Q A diag(o),  g = m_k on m + Q A (m_k on o),

    so the statistics of the completed rows follow from those of x~ (see
    `_completed_statistics`), and the r x r algebra runs once per pattern, not
    per row.

    log_rho_coefficients : Tensor of shape (n_patterns, n_components, n_design)
        `log_rho_coefficients_of` S, m_k on o, and the offset with the
        pattern's r log(2 pi) / 2 - log |A_mm| / 2.
    transform : Tensor of shape (n_patterns, n_components, n_features, n_features)
        M.
    shift : Tensor of shape (n_patterns, n_components, n_features)
        g.
    conditional : Tensor of shape (n_patterns, n_components, n_features, n_features)
        Q, the covariance of q(x_m | z).
    completion_entropy : Tensor of shape (n_patterns, n_components)
        The entropy of q(x_m | z), (r (1 + log 2 pi) - log |A_mm|) / 2.
    """

    log_rho_coefficients: Any
    transform: Any
    shift: Any
    conditional: Any
    completion_entropy: Any


def _pattern_maps(missing, means, moments, offset, terms, layout):
    """`_PatternMaps` of patterns given as masks: `missing` [p, d], 1 where missing."""
    n_patterns = tf.shape(missing)[0]
    n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
    precision = terms.precision[None]  # [1, k, d, d]
    missing = tf.broadcast_to(
        missing[:, None, :], [n_patterns, n_components, n_features]
    )
    observed = 1.0 - missing
    # A_mm on m x m and the identity on o: its inverse is A_mm^-1 and the
    # identity, exactly (the Cholesky factor keeps the zeros between m and o).
    restricted = missing[..., :, None] * precision * missing[..., None, :] + (
        tf.linalg.diag(observed)
    )
    chol = tf.linalg.cholesky(restricted)
    log_det = 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)
    identity = tf.eye(n_features, dtype=tf.float64)
    conditional = tf.linalg.cholesky_solve(
        chol, tf.broadcast_to(identity, tf.shape(restricted))
    ) - tf.linalg.diag(observed)
    solved = tf.linalg.matmul(conditional, precision)  # Q A
    schur = (
        observed[..., :, None]
        * (precision - tf.linalg.matmul(precision, solved))
        * observed[..., None, :]
    )
    observed_means = observed * means[None]
    shift = missing * means[None] + tf.linalg.matvec(solved, observed_means)
    transform = identity - solved * observed[..., None, :]
    coefficients = mahalanobis_coefficients(
        tf.reshape(observed_means, [-1, n_features]),
        moments._replace(
            expected_precision=tf.reshape(schur, [-1, n_features, n_features])
        ),
        COVARIANCE_STRUCTURES["full"],
        layout,
    )
    r = tf.reduce_sum(missing, axis=-1)  # [p, k]
    pattern_offset = offset[None] + 0.5 * (r * _LOG_2PI - log_det)
    log_rho_coefficients = log_rho_coefficients_of(
        coefficients,
        tf.reshape(pattern_offset, [-1]),
        n_features,
        COVARIANCE_STRUCTURES["full"],
    )
    return _PatternMaps(
        tf.reshape(log_rho_coefficients, [n_patterns, n_components, -1]),
        transform,
        shift,
        conditional,
        0.5 * (r * (1.0 + _LOG_2PI) - log_det),
    )


def _completed_statistics(design_sums, entropy, maps, n_features, layout):
    """Statistics of the completed rows, from those of x~ per pattern.

    With N, s = sum w r x~ and T = sum w r x~ x~^T of a pattern's rows, and
    f = M s: sum w r c = f + N g and
    sum w r (c c^T + Q) = M T M^T + f g^T + g f^T + N (g g^T + Q).

    Parameters
    ----------
    design_sums : Tensor of shape (n_patterns, n_design, n_components)
    entropy : scalar Tensor
        That of q(z), over the rows of every pattern.
    maps : _PatternMaps
    """
    n_patterns, n_components = tf.shape(maps.shift)[0], tf.shape(maps.shift)[1]
    x_statistics = unpack_statistics(
        tf.reshape(
            tf.transpose(design_sums, [1, 0, 2]), [-1, n_patterns * n_components]
        ),
        entropy,
        n_features,
        COVARIANCE_STRUCTURES["full"],
        layout,
    )
    counts = tf.reshape(x_statistics.counts, [n_patterns, n_components])
    sums = tf.reshape(x_statistics.first_moment, tf.shape(maps.shift))
    squares = tf.reshape(x_statistics.second_moment, tf.shape(maps.transform))
    mapped = tf.linalg.matvec(maps.transform, sums)  # f
    shift = maps.shift
    outer = mapped[..., :, None] * shift[..., None, :]
    second_moment = (
        tf.linalg.matmul(
            tf.linalg.matmul(maps.transform, squares), maps.transform, transpose_b=True
        )
        + outer
        + tf.linalg.matrix_transpose(outer)
        + counts[..., None, None]
        * (shift[..., :, None] * shift[..., None, :] + maps.conditional)
    )
    return Statistics(
        tf.reduce_sum(counts, axis=0),
        tf.reduce_sum(mapped + counts[..., None] * shift, axis=0),
        tf.reduce_sum(second_moment, axis=0),
        entropy + tf.reduce_sum(counts * maps.completion_entropy),
    )


def incomplete_design(values, layout):
    """The transposed float64 design of rows with 0 at their missing entries.

    What blocks of one pattern read (`_shared_pattern_statistics`); a
    full-batch fit builds it once (`_loop._coordinate_ascent`), as it does the
    design of its complete rows.

    Parameters
    ----------
    values : Tensor of shape (n_rows, n_features)
        `IncompleteRows.values`, NaN where missing.
    layout : DesignLayout

    Returns
    -------
    design_t : float64 Tensor of shape (n_design, n_rows)
    """
    return transposed_design(
        _zero_filled(values), COVARIANCE_STRUCTURES["full"], layout
    )


def _shared_pattern_statistics(
    incomplete, blocks, means, moments, offset, terms, held=None
):
    """`incomplete_statistics` of blocks of one pattern each, run as complete data.

    The maps of at most _PATTERN_MAPS_ELEMENTS / (K D^2) patterns are built at
    once, and their blocks' design sums added up per pattern.

    Parameters
    ----------
    blocks : int32 Tensor of shape (n_blocks, 5)
        Rows of `IncompleteRows.blocks` with one pattern each, in the order of
        their patterns.
    held : float64 Tensor of shape (n_design, n_rows), default=None
        `incomplete_design` of every row of `incomplete`, when the caller
        holds it; otherwise each block builds its own.
    """
    values, weights, _, patterns, _ = incomplete
    n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
    structure = COVARIANCE_STRUCTURES["full"]
    layout = design_layout(n_features, structure)
    pattern_ids, slots = tf.unique(blocks[:, 3])  # slots: 0, 0, 1, 2, 2, ...
    n_shared = tf.shape(pattern_ids)[0]
    n_missing = tf.math.unsorted_segment_max(blocks[:, 2], slots, n_shared)
    in_pattern = tf.cast(
        tf.range(tf.shape(patterns)[1])[None, :] < n_missing[:, None], tf.float64
    )
    missing = tf.reduce_sum(
        tf.one_hot(tf.gather(patterns, pattern_ids), n_features, dtype=tf.float64)
        * in_pattern[:, :, None],
        axis=1,
    )  # [p, d]: 1 where missing
    per_chunk = tf.maximum(
        1, _PATTERN_MAPS_ELEMENTS // (n_components * n_features * n_features)
    )

    def add_chunk(chunk, totals):
        begin = chunk * per_chunk
        size = tf.minimum(per_chunk, n_shared - begin)
        maps = _pattern_maps(
            tf.slice(missing, [begin, 0], [size, -1]),
            means,
            moments,
            offset,
            terms,
            layout,
        )
        first_block, stop_block = tf.unstack(
            tf.searchsorted(slots, tf.stack([begin, begin + size]))
        )

        def add_block(block, previous, running, design_sums, entropy):
            start, rows = blocks[block, 0], blocks[block, 1]
            slot = slots[block] - begin
            if held is None:
                design_t = incomplete_design(
                    tf.slice(values, [start, 0], [rows, -1]), layout
                )
            else:
                design_t = tf.slice(held, [0, start], [-1, rows])  # [m, b]
            resp, block_entropy = _weighted_responsibilities(
                tf.linalg.matmul(maps.log_rho_coefficients[slot], design_t),
                tf.slice(weights, [start], [rows]),
            )
            # The pattern's sums so far, written over its entry at every
            # block: adding each block into a [patterns, m, K] total copied
            # it once per block.
            running = tf.where(
                tf.equal(slot, previous), running, tf.zeros_like(running)
            ) + _design_sums(design_t, resp)
            return (
                block + 1,
                slot,
                running,
                design_sums.write(slot, running),
                entropy + block_entropy,
            )

        _, _, _, design_sums, entropy = tf.while_loop(
            lambda block, *_: block < stop_block,
            add_block,
            (
                first_block,
                tf.constant(-1),
                tf.zeros([tf.shape(layout.partners)[0], n_components], tf.float64),
                tf.TensorArray(tf.float64, size=size),
                tf.constant(0.0, tf.float64),
            ),
            parallel_iterations=1,
        )
        statistics = _completed_statistics(
            design_sums.stack(), entropy, maps, n_features, layout
        )
        return chunk + 1, tf.nest.map_structure(tf.add, totals, statistics)

    zeros = Statistics(
        tf.zeros([n_components], tf.float64),
        tf.zeros([n_components, n_features], tf.float64),
        tf.zeros([n_components, n_features, n_features], tf.float64),
        tf.constant(0.0, tf.float64),
    )
    _, totals = tf.while_loop(
        lambda chunk, _: chunk * per_chunk < n_shared,
        add_chunk,
        (tf.constant(0), zeros),
        parallel_iterations=1,
    )
    return totals


def _wishart_statistics(incomplete, posterior, moments, offset, structure, held):
    """`incomplete_statistics` of a Wishart ('full', 'tied'), by blocks.

    Blocks of one pattern (`skbayesmix._missing.split_incomplete` makes them for
    patterns of many rows) run as complete data, the others row by row.
    """
    values, weights, pattern, patterns, blocks = incomplete
    terms = _wishart_terms(posterior, moments)
    n_components = tf.shape(posterior.means)[0]
    n_features = tf.shape(posterior.means)[1]
    zeros = Statistics(
        tf.zeros([n_components], tf.float64),
        tf.zeros([n_components, n_features], tf.float64),
        tf.zeros([n_components, n_features, n_features], tf.float64),
        tf.constant(0.0, tf.float64),
    )

    def statistics_of_block(start, size, n_missing, first_pattern, n_patterns):
        return _wishart_block_sums(
            tf.slice(values, [start, 0], [size, -1]),
            tf.slice(weights, [start], [size]),
            tf.slice(pattern, [start], [size]) - first_pattern,
            tf.slice(patterns, [first_pattern, 0], [n_patterns, n_missing]),
            posterior.means,
            offset,
            terms,
        )

    shared = tf.equal(blocks[:, 4], 1)
    totals = tf.nest.map_structure(
        tf.add,
        _sum_over_blocks(
            tf.boolean_mask(blocks, tf.logical_not(shared)), statistics_of_block, zeros
        ),
        _shared_pattern_statistics(
            incomplete,
            tf.boolean_mask(blocks, shared),
            posterior.means,
            moments,
            offset,
            terms,
            held,
        ),
    )
    if not structure.shared:
        return totals
    return totals._replace(
        second_moment=tf.reduce_sum(totals.second_moment, axis=0, keepdims=True)
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
    weighted_resp, entropy = _weighted_responsibilities(log_rho, weights, axis=1)
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


def incomplete_statistics(incomplete, posterior, moments, offset, structure, held=None):
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
    held : float64 Tensor of shape (n_design, n_rows), default=None
        A Wishart's `incomplete_design` of the rows, when the caller holds it
        across iterations.

    Returns
    -------
    statistics : Statistics
        float64; its entropy term includes that of q(x_m | z).
    """
    if structure.family == "wishart":
        return _wishart_statistics(
            incomplete, posterior, moments, offset, structure, held
        )
    values, weights, _, _, blocks = incomplete
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

    def statistics_of_block(start, size, *_):
        return _gamma_block_statistics(
            tf.slice(values, [start, 0], [size, -1]),
            tf.slice(weights, [start], [size]),
            posterior,
            moments,
            offset,
            structure,
        )

    return _sum_over_blocks(blocks, statistics_of_block, zeros)


def _sum_over_blocks(blocks, statistics_of_block, zeros):
    """sum_b statistics_of_block(*blocks[b]) over the rows of `blocks`.

    Parameters
    ----------
    blocks : int32 Tensor of shape (n_blocks, 5)
        `IncompleteRows.blocks`.
    statistics_of_block : callable
        Takes the five entries of a row of `blocks` as scalar Tensors.
    zeros : nested structure of Tensors
        Zero totals, in the structure that `statistics_of_block` returns.
    """

    def add_block(block, totals):
        statistics = statistics_of_block(*tf.unstack(blocks[block]))
        return block + 1, tf.nest.map_structure(tf.add, totals, statistics)

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
