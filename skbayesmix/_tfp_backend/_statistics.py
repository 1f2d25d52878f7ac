"""The one E-step: statistics of a chunk of rows, by blocks, as two GEMMs per block."""

# Per block of rows the E-step and the statistics are both GEMMs against the
# block's design features d(x), second-order features of x_a = [x, 1]: each
# product x_a[i] x_a[j], i <= j, for 'full' and 'tied'; x * x, x and 1 for
# 'diag'; ||x||^2, x and 1 for 'spherical':
#
#   E[(x - m_k)^T Lambda_k (x - m_k)] = d(x) . c_k                  (E-step)
#   sum_n w_n r_nk d(x_n)                                            (statistics)
#
# The constant feature carries m_k^T E[Lambda_k] m_k (in float64, the whole
# offset of log rho) into the E-step GEMM and N_k out of the statistics GEMM.
#
# A full-batch fit builds the design once, in one slab per block, when it fits
# HELD_DESIGN_MAX_ELEMENTS; otherwise, and for chunks fed one at a time, it is
# built per block, so no (n_samples, n_design) array beyond that budget is held.
#
# Precision. Sums over blocks are float64 whatever X's dtype: float32 sums over
# 1e5+ rows lose the digits that the scatter (second moment minus squared mean)
# and the convergence test need. For float32 X the design is float32 and both
# GEMMs of a block run in float32, a block's sums then added up in float64:
# float32 GEMMs ran these shapes about twice as fast as float64 ones, and a
# float32 statistics GEMM was the half of the flops a float64 one left slow.
# Where the float32 expansion d(x) . c_k could lose more than
# _MAX_MAHALANOBIS_ERROR (an ill-conditioned E[Lambda] makes the terms of d . c
# large while their sum is small), the row is done in float64 throughout, from
# its exact float64 design (x_i x_j of float32 inputs is exact in float64). The
# bound is checked per row and per component that matters, so far outliers
# send only their own rows to float64, and one near-singular component only
# the rows near it (see `_block_e_step`).

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from skbayesmix._state import Statistics
from skbayesmix._tfp_backend._maths import precision_times

# Most rows per block: the [block, n_components] temporaries stay in cache, and
# the two GEMMs per block are still large enough to run at full speed.
BLOCK_SIZE = 4096

# Largest design of one block, in elements, by the design's dtype, unless that
# leaves fewer than _MIN_BLOCK_ROWS rows (see `block_rows`): 1 MB in float64,
# and for a Wishart 2 MB in float32, whose faster GEMMs leave the per-block ops
# a larger share.
_BLOCK_DESIGN_ELEMENTS = {
    ("wishart", tf.float64): 2**17,
    ("wishart", tf.float32): 2**19,
    ("gamma", tf.float64): 2**17,
    ("gamma", tf.float32): 2**17,
}
_MIN_BLOCK_ROWS = 128

# Largest tolerated rounding error of a float32 Mahalanobis term, in nats * 2.
_MAX_MAHALANOBIS_ERROR = 0.05

# log rho this far below a row's best is r < 1e-13 of it: its rounding is moot.
_NEGLIGIBLE_LOG_RHO = 30.0

# Largest design (in float64 elements, 256 MB) that a full-batch fit builds once
# and keeps for all its iterations. Rebuilding it per block and iteration cost
# 20-45% of an iteration on 1e6 x 16 'diag' and 6e4 x 16 'full'; beyond this
# size, as for 'full' on 1e6 rows, the design is built per block and never held.
# A float32 fit holds it in float32, half as much (see HeldDesign).
HELD_DESIGN_MAX_ELEMENTS = 2**25


class DesignLayout(NamedTuple):
    """Which products x_a[i] x_a[j] of x_a = [x, 1] a Wishart's design holds.

    The pairs come in windows: window s holds (i, (i + s) mod n) for every i < n,
    n = n_features + 1, s = 0, ..., n // 2. That is every pair i <= j once, in
    one order or the other, except that for an even n the last window holds its
    n / 2 pairs twice. Because each window's first factors are x_a itself, the
    design is one gather and one broadcast product; the row-major packed
    triangle took two gathers and a concat, twice as long on 1e6 x 16.

    Built once per graph (`design_layout`) and passed down, so that the design,
    the E-step coefficients and the unpacking of the sums share one set of index
    ops instead of each building its own: graph size is what a fresh process
    pays for, in tracing and in TF's first-call set-up.

    partners : int32 Tensor of shape (n_design,)
        j of each feature x_a[i] x_a[j], window by window.
    square : int32 Tensor of shape (n_design,)
        i * n + j: the position of (i, j) in a flattened n x n matrix.
    multiplicity : float64 Tensor of shape (n_design,)
        How many entries of a symmetric n x n matrix the feature stands for: 1
        on the diagonal, 2 off it, 0 for the second copy of a pair.
    packed : int32 Tensor of shape (n * n,)
        For each position of a flattened n x n matrix, the first feature that
        holds it: (i, j) and (j, i) read the same one.
    """

    partners: Any
    square: Any
    multiplicity: Any
    packed: Any


def design_layout(n_features, structure):
    """The `DesignLayout` of a Wishart's design; None for the Gamma family."""
    if structure.family != "wishart":
        return None
    n_augmented = n_features + 1
    n_windows = n_augmented // 2 + 1
    shifts = tf.range(n_windows)[:, None]  # [w, 1]
    rows = tf.broadcast_to(tf.range(n_augmented)[None, :], [n_windows, n_augmented])
    cols = (rows + shifts) % n_augmented
    repeated = tf.logical_and(2 * shifts == n_augmented, rows >= shifts)
    rows, cols, repeated = (tf.reshape(a, [-1]) for a in (rows, cols, repeated))
    multiplicity = tf.cast(
        tf.where(repeated, 0.0, tf.where(rows == cols, 1.0, 2.0)), tf.float64
    )
    position = tf.range(tf.shape(rows)[0])
    # A second copy comes after the first, so the smallest position is the first.
    packed = tf.math.unsorted_segment_min(
        tf.concat([position, position], axis=0),
        tf.concat([rows * n_augmented + cols, cols * n_augmented + rows], axis=0),
        n_augmented * n_augmented,
    )
    return DesignLayout(cols, rows * n_augmented + cols, multiplicity, packed)


def transposed_design(X, structure, layout):
    """The design features of a block of rows, transposed.

    Transposed because gathering whole rows of X^T (contiguous) is several times
    faster than gathering columns of X.

    Parameters
    ----------
    X : Tensor of shape (n_block, n_features)
    structure : CovarianceStructure
    layout : DesignLayout or None

    Returns
    -------
    design_t : Tensor of shape (n_design, n_block)
        x_a[i] x_a[j] in `layout`'s order for a Wishart, [x * x; x; 1] for
        'diag', [||x||^2; x; 1] for 'spherical'.
    """
    n_block = tf.shape(X)[0]
    xt = tf.transpose(X)  # [d, b]
    ones = tf.ones([1, n_block], X.dtype)
    if structure.family == "wishart":
        augmented = tf.concat([xt, ones], axis=0)  # [n, b]
        partners = tf.reshape(
            tf.gather(augmented, layout.partners),
            [-1, tf.shape(augmented)[0], n_block],
        )  # [w, n, b]
        return tf.reshape(augmented[None] * partners, [-1, n_block])
    if structure.scale_inverse_rank == 1:
        second_order = xt * xt
    else:
        second_order = tf.reduce_sum(xt * xt, axis=0, keepdims=True)
    return tf.concat([second_order, xt, ones], axis=0)


def block_rows(n_features, structure, dtype):
    """Rows per block: BLOCK_SIZE, or fewer, a multiple of 64, for a wide design.

    A Wishart's design at D = 32 is 561 features, 18 MB per block of 4096 rows:
    building it, casting it and the two GEMMs each streamed it from memory. In
    blocks of 192 rows, whose design fits in L2, an iteration of 1e5 x 32 'full'
    took 0.20-0.23 s instead of 0.28-0.30 s in float64 and 0.19-0.21 s instead
    of 0.22-0.24 s in float32 (warm fits, interleaved). A Wishart's float32
    block may be four times as large (`_BLOCK_DESIGN_ELEMENTS`): a pass over
    1e6 x 16, K=16 'full' took 0.23 s in blocks of 3392 rows against 0.28 s in
    blocks of 832, and 1e5 x 32 0.071 s in blocks of 896 against 0.096 s in
    blocks of 192; the same blocks in float64 changed its passes by less than
    the noise. The Gamma family's narrow design is not what fills a block, its
    [K, rows] float64 temporaries are: 'diag' at D = 16 keeps 3968 rows in both
    dtypes (a float32 pass over 1e6 x 16, K=16 took 0.107 s so, and 0.116 s in
    blocks of 8192).

    Parameters
    ----------
    n_features : scalar int32 Tensor
    structure : CovarianceStructure
    dtype : tf.DType
        The design's dtype, float32 or float64.

    Returns
    -------
    rows : scalar int32 Tensor
    """
    budget = _BLOCK_DESIGN_ELEMENTS[structure.family, dtype]
    fitting = budget // _n_design(n_features, structure) // 64 * 64
    return tf.minimum(BLOCK_SIZE, tf.maximum(_MIN_BLOCK_ROWS, fitting))


def holds_design(n_samples, n_features, structure):
    """Whether a full-batch fit of this size holds its design (`held_design`).

    Decided in NumPy per fit, so that each compiled loop has only the one way of
    getting a block's design that it uses: a graph with both cost a fresh
    process about a tenth more tracing and first-call set-up.
    """
    return n_samples * _n_design(n_features, structure) <= HELD_DESIGN_MAX_ELEMENTS


class HeldDesign(NamedTuple):
    """The design of all rows of X, built once and held across iterations.

    Stored as one (n_design, block_rows) slab per block of rows (`block_rows`),
    so that each block reads a contiguous slab, the layout the per-block GEMMs
    want.

    design : Tensor of X's dtype, of shape (n_blocks, n_design, block_rows)
        `transposed_design` of every row, zero-padded to whole blocks, in X's
        dtype: both GEMMs of a float32 fit run on it.
    squared_norms : float64 Tensor of shape (n_blocks, block_rows), or None for \
float64 X
        ||x_a||^2 = ||x||^2 + 1 of each row: the float32 error bound's factor,
        which would otherwise cost a pass over the block.
    """

    design: Any
    squared_norms: Any


def held_design(X, structure, layout):
    """The `HeldDesign` of X, block by block.

    Returns
    -------
    held : HeldDesign
    """
    n_samples = tf.shape(X)[0]
    rows = block_rows(tf.shape(X)[1], structure, X.dtype)
    n_blocks = (n_samples + rows - 1) // rows
    padded = tf.pad(X, [[0, n_blocks * rows - n_samples], [0, 0]])
    design_t = transposed_design(padded, structure, layout)  # [m, n_blocks * B]
    slabs = tf.reshape(design_t, [tf.shape(design_t)[0], n_blocks, rows])
    design = tf.transpose(slabs, [1, 0, 2])
    if X.dtype == tf.float64:
        return HeldDesign(design, None)
    squared_norms = 1.0 + tf.reshape(
        tf.reduce_sum(tf.square(tf.cast(padded, tf.float64)), axis=1),
        [n_blocks, rows],
    )
    return HeldDesign(design, squared_norms)


def _block_design(X, held, block, start, size, structure, layout):
    """The design of rows start:start + size (block `block`), in X's dtype."""
    if held is not None:
        return held.design[block][:, :size]
    return transposed_design(tf.slice(X, [start, 0], [size, -1]), structure, layout)


def _exact_design(rows, structure, layout):
    """The float64 design of some rows of X: exact, as x_i x_j of float32 is."""
    return transposed_design(tf.cast(rows, tf.float64), structure, layout)


def mahalanobis_coefficients(means, moments, structure, layout):
    """c_k with E[(x - m_k)^T Lambda_k (x - m_k)] = d(x) . c_k.

    (x - m)^T A (x - m) = x_a^T B x_a, with A = E[Lambda_k], x_a = [x, 1] and
    B = [[A, -A m], [-m^T A, m^T A m]]. A Wishart's design holds x_a[i] x_a[j]
    once for both (i, j) and (j, i), hence its `multiplicity`.

    Returns
    -------
    coefficients : Tensor of shape (n_components, n_design)
    """
    precision = moments.expected_precision
    precision_means = precision_times(precision, means, structure)  # [k, d]
    constant = tf.reduce_sum(precision_means * means, axis=1)  # [k]
    if structure.family == "wishart":
        n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
        precision = tf.broadcast_to(precision, [n_components, n_features, n_features])
        augmented = tf.concat(
            [
                tf.concat([precision, -precision_means[:, :, None]], axis=2),
                tf.concat([-precision_means, constant[:, None]], axis=1)[:, None],
            ],
            axis=1,
        )  # [k, n, n]
        packed = tf.gather(
            tf.reshape(augmented, [n_components, -1]), layout.square, axis=1
        )  # [k, m]
        return packed * layout.multiplicity
    if structure.scale_inverse_rank == 1:
        second_order = precision
    else:
        second_order = precision[:, None]
    return tf.concat([second_order, -2.0 * precision_means, constant[:, None]], 1)


def unpack_statistics(design_sums, resp_entropy, n_features, structure, layout):
    """Statistics from the weighted sums of the design features.

    Parameters
    ----------
    design_sums : Tensor of shape (n_design, n_components)
        sum_n w_n r_nk d(x_n), as `_design_sums` adds them up.
    resp_entropy : scalar Tensor
    n_features : scalar int32 Tensor
    structure : CovarianceStructure
    layout : DesignLayout or None

    Returns
    -------
    statistics : Statistics
    """
    design_moments = tf.transpose(design_sums)  # [k, m]
    if structure.family == "wishart":
        n_augmented = n_features + 1
        augmented = tf.reshape(
            tf.gather(design_moments, layout.packed, axis=1),
            [-1, n_augmented, n_augmented],
        )  # [k, n, n]: sum_n w_n r_nk x_a x_a^T
        counts = augmented[:, -1, -1]
        first_moment = augmented[:, :-1, -1]
        second_moment = augmented[:, :-1, :-1]
        if structure.shared:
            second_moment = tf.reduce_sum(second_moment, axis=0, keepdims=True)
        return Statistics(counts, first_moment, second_moment, resp_entropy)
    counts = design_moments[:, -1]
    first_moment = design_moments[:, -n_features - 1 : -1]  # [k, d]
    if structure.scale_inverse_rank == 1:
        second_moment = design_moments[:, :n_features]
    else:
        second_moment = design_moments[:, 0] / tf.cast(n_features, counts.dtype)
    return Statistics(counts, first_moment, second_moment, resp_entropy)


def _sum_over_blocks(n_samples, rows, statistics_of_block, initial):
    """sum_b statistics_of_block(b, start_b, size_b) over blocks of `rows` rows.

    The block count depends on n_samples, known only at run time; the last block
    is ragged.
    """
    n_blocks = (n_samples + rows - 1) // rows

    def add_block(block, totals):
        start = block * rows
        size = tf.minimum(rows, n_samples - start)
        stats = statistics_of_block(block, start, size)
        return block + 1, tf.nest.map_structure(tf.add, totals, stats)

    _, totals = tf.while_loop(
        lambda block, totals: block < n_blocks,
        add_block,
        (tf.constant(0), initial),
        parallel_iterations=1,
    )
    return totals


def _weighted_responsibilities(log_rho, sample_weight, axis=0):
    """E-step of one block: w_n r_kn, and -sum_nk w_n r_kn log r_kn.

    r_kn = exp(s_kn) / t_n, with s_kn = log rho_kn - max_k log rho_kn and
    t_n = sum_k exp(s_kn). As sum_k r_kn = 1, the entropy is
    sum_n w_n log t_n - sum_nk w_n r_kn s_kn: neither r nor log r is ever
    formed, and one exp per element serves both. Each pass over [k, b] saved
    is about 5% of an iteration on 1e6 x 16 'diag'.

    Parameters
    ----------
    log_rho : Tensor of shape (n_components, n_block), float64
        Or (n_block, n_components) with ``axis=1``: transposing a block's
        [b, k] costs as much as the exp.
    sample_weight : Tensor of shape (n_block,), float64
    axis : {0, 1}, default=0
        The axis of the components.

    Returns
    -------
    weighted_resp : Tensor of the shape of `log_rho`
    entropy : scalar Tensor
    """
    shifted = log_rho - tf.reduce_max(log_rho, axis=axis, keepdims=True)
    unnormalised = tf.exp(shifted)
    total = tf.reduce_sum(unnormalised, axis=axis)  # [b]
    weighted_resp = unnormalised * tf.expand_dims(sample_weight / total, axis)
    entropy = tf.reduce_sum(sample_weight * tf.math.log(total)) - tf.reduce_sum(
        weighted_resp * shifted
    )
    return weighted_resp, entropy


def _given_responsibilities(resp, sample_weight, start, size):
    """`_weighted_responsibilities` of rows start:start + size of given r_nk."""
    resp_block = tf.transpose(
        tf.cast(tf.slice(resp, [start, 0], [size, -1]), tf.float64)
    )  # [k, b]
    weighted_resp = resp_block * sample_weight[None, :]
    # 0 log 0 = 0: hard initial assignments have zero entropy.
    entropy = -tf.reduce_sum(
        tf.math.multiply_no_nan(tf.math.log(resp_block), weighted_resp)
    )
    return weighted_resp, entropy


def _design_sums(design_t, weighted_resp):
    """sum_n w_n r_kn d(x_n) over one block, as an (n_design, n_components) array.

    d^T (w r)^T transposes only the small [k, b] operand; the sums stay
    transposed until all blocks are added.
    """
    return tf.linalg.matmul(design_t, weighted_resp, transpose_b=True)


def _zero_totals(n_components, n_design):
    return (
        tf.zeros([n_design, n_components], tf.float64),
        tf.constant(0.0, tf.float64),
    )


def _n_design(n_features, structure):
    if structure.family == "wishart":
        return ((n_features + 1) // 2 + 1) * (n_features + 1)
    if structure.scale_inverse_rank == 1:
        return 2 * n_features + 1
    return n_features + 2


def _constant_feature(n_features, structure):
    """Where the design holds its constant feature, 1 = x_a[D] x_a[D]."""
    if structure.family == "wishart":
        return n_features  # window 0 holds the squares, in order
    return _n_design(n_features, structure) - 1


def expected_statistics(
    X,
    sample_weight,
    posterior,
    moments,
    offset,
    structure,
    held=None,
    layout=None,
    resp_init=None,
    use_resp_init=None,
):
    """E-step under q(theta), then the statistics of q(z), over the rows of X.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features), float32 or float64
    sample_weight : Tensor of shape (n_samples,), float64
    posterior : Posterior of float64 Tensors
    moments : PrecisionMoments of `posterior`, float64
    offset : Tensor of shape (n_components,), float64
        `log_rho_offset` of `posterior`.
    held : HeldDesign, default=None
        `held_design(X)`, when the caller holds it across iterations.
    layout : DesignLayout, default=None
        `design_layout`, when the caller has built it.
    resp_init : Tensor of shape (n_samples, n_components), default=None
        Responsibilities that replace the E-step when `use_resp_init` is true:
        the full-batch loop's first pass from a cold start runs through here.
    use_resp_init : scalar bool Tensor, default=None

    Returns
    -------
    statistics : Statistics
        float64, with the weighted entropy -sum_nk w_n r_nk log r_nk.
    """
    n_samples, n_features = tf.shape(X)[0], tf.shape(X)[1]
    if layout is None:
        layout = design_layout(n_features, structure)
    coefficients = mahalanobis_coefficients(
        posterior.means, moments, structure, layout
    )  # [k, m]
    e_step = _block_e_step(X, held, coefficients, offset, structure, layout)

    def statistics_of_block(block, start, size):
        weight = tf.slice(sample_weight, [start], [size])
        design = _block_design(X, held, block, start, size, structure, layout)
        if resp_init is None:
            return e_step(block, start, size, design, weight)

        def given():
            if X.dtype == tf.float64:
                exact = design
            else:
                exact = _exact_design(
                    tf.slice(X, [start, 0], [size, -1]), structure, layout
                )
            weighted_resp, entropy = _given_responsibilities(
                resp_init, weight, start, size
            )
            return _design_sums(exact, weighted_resp), entropy

        return tf.cond(
            use_resp_init, given, lambda: e_step(block, start, size, design, weight)
        )

    totals = _sum_over_blocks(
        n_samples,
        block_rows(n_features, structure, X.dtype),
        statistics_of_block,
        _zero_totals(tf.shape(coefficients)[0], tf.shape(coefficients)[1]),
    )
    return unpack_statistics(*totals, n_features, structure, layout)


def log_rho_coefficients_of(coefficients, offset, n_features, structure):
    """c'_k with log rho_k = d(x) . c'_k: -c_k / 2, the offset on the constant.

    The GEMM yields log rho directly, the offset carried by the constant
    feature: each pass over [k, b] saved is about 4% of an iteration on
    1e6 x 16 'diag'.

    Parameters
    ----------
    coefficients : Tensor of shape (n_components, n_design)
        `mahalanobis_coefficients`.
    offset : Tensor of shape (n_components,)
    n_features : scalar int32 Tensor
    structure : CovarianceStructure
    """
    constant_feature = tf.one_hot(
        _constant_feature(n_features, structure),
        tf.shape(coefficients)[1],
        dtype=tf.float64,
    )
    return -0.5 * coefficients + offset[:, None] * constant_feature  # -0.5: exact


def _block_e_step(X, held, coefficients, offset, structure, layout):
    """The E-step and the statistics of one block of rows, in X's dtype where safe.

    log rho_kn = offset_k - E[(x_n - m_k)^T Lambda_k (x_n - m_k)] / 2 is one
    GEMM, the statistics sum_n w_n r_kn d(x_n) another. For float32 X both run
    in float32, on the float32 design, and each block's sums are added up in
    float64. A row whose float32 E-step could lose more than
    _MAX_MAHALANOBIS_ERROR (see `_log_rho_bound`) is done in float64 throughout:
    its log rho, from its exact float64 design, and its part of the sums.

    The same bound keeps the float32 sums accurate. A row's float32 terms are
    off by about eps (1 + sqrt(b)) ||x_a||^2 w r_k, over a block of b rows. For
    each component k with a say in the row, the bound holds
    eps sqrt(m) ||c_k|| ||x_a||^2 below 0.05, where ||c_k|| is at least the
    largest eigenvalue of E[Lambda_k], that is nu_k over the smallest
    eigenvalue of the Wishart's scale inverse W_k^-1. The sums of a
    component's rows, with random rounding errors, then move W_k^-1 by a
    relative 0.05 sqrt(b / m) / sqrt(N_k) or less: 7e-3 at N_k = 1000 in
    float32's blocks of 3392 rows for D = 16, were every row at the bound.

    Returns
    -------
    e_step : callable
        e_step(block, start, size, design_t, weight) gives the block's
        (design_sums, entropy) (`_design_sums`, `_weighted_responsibilities`),
        float64, for the `size` rows from `start` of block number `block`
        whose design, in X's dtype, is design_t.
    """
    n_features = tf.shape(X)[1]
    log_rho_coefficients = log_rho_coefficients_of(
        coefficients, offset, n_features, structure
    )

    def in_float64(design_t):
        # Components run along the first axis: with the design transposed,
        # c @ d then needs no transposed operand, which measured faster for
        # 'full'.
        return tf.linalg.matmul(log_rho_coefficients, design_t)  # [k, b]

    if X.dtype == tf.float64:

        def e_step(block, start, size, design_t, weight):
            weighted_resp, entropy = _weighted_responsibilities(
                in_float64(design_t), weight
            )
            return _design_sums(design_t, weighted_resp), entropy

        return e_step

    low_dtype = X.dtype
    low_coefficients = tf.cast(-0.5 * coefficients, low_dtype)  # exact: a power of 2
    error_per_design_norm = _log_rho_bound(coefficients)

    def e_step(block, start, size, design_t, weight):
        if held is not None:
            design_norms = held.squared_norms[block][:size]
        else:
            design_norms = _squared_norms(design_t, n_features, structure)
        # Only the GEMMs run in float32. TF's vectorised float32 exp rounds a
        # block's ragged tail differently, so a float32 softmax made a row's r
        # depend, by an ulp, on where its block ended. The offset is added in
        # float64: in float32, folded into the constant term, it measurably
        # moved the ELBO.
        log_rho = offset[:, None] + tf.cast(
            tf.linalg.matmul(low_coefficients, design_t), tf.float64
        )  # [k, b]
        # The bound is checked per row: at D = 32 nearly every block of 4096
        # rows held one whose bound failed, which sent whole blocks to float64
        # and made float32 fits slower than float64 ones.
        # The per-row check costs a tenth of a pass over [k, b] ops; most
        # blocks pass it on their largest bound alone, which implies it.
        exposed = tf.cond(
            tf.reduce_max(error_per_design_norm) * tf.reduce_max(design_norms)
            >= _MAX_MAHALANOBIS_ERROR,
            lambda: _exposed_rows(log_rho, error_per_design_norm, design_norms),
            lambda: tf.zeros([size], tf.bool),
        )

        def in_low_dtype():
            weighted_resp, entropy = _weighted_responsibilities(log_rho, weight)
            return _low_design_sums(design_t, weighted_resp), entropy

        def with_exposed_rows():
            rows = tf.where(exposed)[:, 0]
            exact = _exact_design(
                tf.gather(tf.slice(X, [start, 0], [size, -1]), rows),
                structure,
                layout,
            )  # [m, r]
            mixed_log_rho = tf.transpose(
                tf.tensor_scatter_nd_update(
                    tf.transpose(log_rho),
                    rows[:, None],
                    tf.transpose(in_float64(exact)),
                )
            )
            weighted_resp, entropy = _weighted_responsibilities(mixed_log_rho, weight)
            exposed_resp = tf.gather(weighted_resp, rows, axis=1)
            kept_resp = weighted_resp * tf.cast(tf.logical_not(exposed), tf.float64)
            return (
                _low_design_sums(design_t, kept_resp)
                + _design_sums(exact, exposed_resp),
                entropy,
            )

        return tf.cond(tf.reduce_any(exposed), with_exposed_rows, in_low_dtype)

    return e_step


def _log_rho_bound(coefficients):
    """Bound on each component's float32 log rho rounding error, per ||x_a||^2.

    |fl(d . c) - d . c| <~ (1 + sqrt(m)) eps ||d|| ||c||, and
    ||d(x)|| <= ||x_a||^2 = ||x||^2 + 1 for every structure's design.

    Returns
    -------
    bound : float64 Tensor of shape (n_components,)
    """
    n_design = tf.cast(tf.shape(coefficients)[1], tf.float64)
    return (
        (1.0 + tf.sqrt(n_design))
        * np.finfo(np.float32).eps
        * tf.norm(coefficients, axis=1)
    )


def _exposed_rows(log_rho, error_per_design_norm, design_norms):
    """The rows whose float32 log rho could be off by _MAX_MAHALANOBIS_ERROR.

    Only components that could matter count: one whose log rho, even raised by
    its error bound, stays _NEGLIGIBLE_LOG_RHO below the row's best lowered by
    its own has r < 1e-13 whatever the rounding. A tight component's large
    c_k then exposes only the rows near it, not every row of the data.

    Parameters
    ----------
    log_rho : float64 Tensor of shape (n_components, n_block)
        From the float32 GEMM.
    error_per_design_norm : float64 Tensor of shape (n_components,)
        `_log_rho_bound`.
    design_norms : float64 Tensor of shape (n_block,)

    Returns
    -------
    exposed : bool Tensor of shape (n_block,)
    """
    error = error_per_design_norm[:, None] * design_norms[None, :]  # [k, b]
    best = tf.reduce_max(log_rho - error, axis=0)  # [b]
    matters = log_rho + error >= best - _NEGLIGIBLE_LOG_RHO
    return tf.reduce_any(
        tf.logical_and(error >= _MAX_MAHALANOBIS_ERROR, matters), axis=0
    )


def _squared_norms(design_t, n_features, structure):
    """||x_a||^2 = ||x||^2 + 1 of each row, read off its design's squares.

    Returns
    -------
    squared_norms : float64 Tensor of shape (n_block,)
    """
    if structure.family == "wishart":
        # Window 0 holds the squares x_a[i]^2, the constant's among them.
        squares = tf.reduce_sum(design_t[: n_features + 1], axis=0)
        return tf.cast(squares, tf.float64)
    if structure.scale_inverse_rank == 1:
        squares = tf.reduce_sum(design_t[:n_features], axis=0)
    else:
        squares = design_t[0]
    return 1.0 + tf.cast(squares, tf.float64)


def _low_design_sums(design_t, weighted_resp):
    """`_design_sums` as a GEMM in the design's dtype, returned in float64."""
    return tf.cast(
        _design_sums(design_t, tf.cast(weighted_resp, design_t.dtype)), tf.float64
    )


def responsibility_statistics(X, sample_weight, resp, structure):
    """The statistics of given responsibilities (an initialisation), by blocks.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features), float32 or float64
    sample_weight : Tensor of shape (n_samples,), float64
    resp : Tensor of shape (n_samples, n_components)

    Returns
    -------
    statistics : Statistics
        float64, with the weighted entropy of `resp`.
    """
    n_samples, n_features = tf.shape(X)[0], tf.shape(X)[1]
    layout = design_layout(n_features, structure)

    def statistics_of_block(block, start, size):
        design = _exact_design(tf.slice(X, [start, 0], [size, -1]), structure, layout)
        weighted_resp, entropy = _given_responsibilities(
            resp, tf.slice(sample_weight, [start], [size]), start, size
        )
        return _design_sums(design, weighted_resp), entropy

    totals = _sum_over_blocks(
        n_samples,
        block_rows(n_features, structure, tf.float64),
        statistics_of_block,
        _zero_totals(tf.shape(resp)[1], _n_design(n_features, structure)),
    )
    return unpack_statistics(*totals, n_features, structure, layout)
