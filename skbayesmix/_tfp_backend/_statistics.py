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
# Precision. Sums over samples are float64 whatever X's dtype: float32 sums over
# 1e5+ rows lose the digits that the scatter (second moment minus squared mean)
# and the convergence test need. The design is built in float64, where x_i x_j
# of float32 inputs is exact. For float32 X the E-step GEMM runs in float32 where
# that pays (on a held design's float32 copy, and on a Wishart's wide design;
# see `_block_log_rho`), except where the float32 expansion d(x) . c_k could
# lose more than _MAX_MAHALANOBIS_ERROR: an ill-conditioned E[Lambda] makes the
# terms of d . c large while their sum is small. The bound is checked per row,
# so far outliers send only their own rows to float64, and one near-singular
# component every row.

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from skbayesmix._state import Statistics
from skbayesmix._tfp_backend._maths import precision_times

# Most rows per block: the [block, n_components] temporaries stay in cache, and
# the two GEMMs per block are still large enough to run at full speed.
BLOCK_SIZE = 4096

# Largest float64 design of one block, in elements (1 MB, half a core's L2
# cache, leaving room for its float32 copy and the [k, b] temporaries), unless
# that leaves fewer than _MIN_BLOCK_ROWS rows (see `block_rows`).
_BLOCK_DESIGN_ELEMENTS = 2**17
_MIN_BLOCK_ROWS = 128

# Largest tolerated rounding error of a float32 Mahalanobis term, in nats * 2.
_MAX_MAHALANOBIS_ERROR = 0.05

# Largest design (in float64 elements, 256 MB) that a full-batch fit builds once
# and keeps for all its iterations. Rebuilding it per block and iteration cost
# 20-45% of an iteration on 1e6 x 16 'diag' and 6e4 x 16 'full'; beyond this
# size, as for 'full' on 1e6 rows, the design is built per block and never held.
# A float32 fit holds a float32 copy besides, half as much again (see HeldDesign).
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


def block_rows(n_features, structure):
    """Rows per block: BLOCK_SIZE, or fewer, a multiple of 64, for a wide design.

    A Wishart's design at D = 32 is 561 features, 18 MB per block of 4096 rows:
    building it, casting it and the two GEMMs each streamed it from memory. In
    blocks of 192 rows, whose design fits in L2, an iteration of 1e5 x 32 'full'
    took 0.20-0.23 s instead of 0.28-0.30 s in float64 and 0.19-0.21 s instead
    of 0.22-0.24 s in float32 (warm fits, interleaved). At D = 16 (832 rows)
    the change was within the noise; 'diag' at D = 16 gets 3968 rows.

    Returns
    -------
    rows : scalar int32 Tensor
    """
    fitting = _BLOCK_DESIGN_ELEMENTS // _n_design(n_features, structure) // 64 * 64
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

    design : float64 Tensor of shape (n_blocks, n_design, block_rows)
        `transposed_design` of every row, zero-padded to whole blocks.
    low : Tensor of X's dtype, of the same shape
        The operand of a float32 E-step GEMM; `design` itself for float64 X.
        Casting the design per block and iteration took as long as the float32
        GEMM saved; held, the GEMM of 1e6 x 16 'diag' takes 25 instead of 62 ms
        per iteration, for half as much memory again.
    squared_norms : float64 Tensor of shape (n_blocks, block_rows), or None for \
float64 X
        ||x_a||^2 = ||x||^2 + 1 of each row: the float32 error bound's factor,
        which would otherwise cost a pass over the block.
    """

    design: Any
    low: Any
    squared_norms: Any


def held_design(X, structure, layout):
    """The `HeldDesign` of X, block by block.

    Returns
    -------
    held : HeldDesign
    """
    n_samples = tf.shape(X)[0]
    rows = block_rows(tf.shape(X)[1], structure)
    n_blocks = (n_samples + rows - 1) // rows
    padded = tf.pad(tf.cast(X, tf.float64), [[0, n_blocks * rows - n_samples], [0, 0]])
    design_t = transposed_design(padded, structure, layout)  # [m, n_blocks * B]
    slabs = tf.reshape(design_t, [tf.shape(design_t)[0], n_blocks, rows])
    design = tf.transpose(slabs, [1, 0, 2])
    if X.dtype == tf.float64:
        return HeldDesign(design, design, None)
    squared_norms = 1.0 + tf.reshape(
        tf.reduce_sum(tf.square(padded), axis=1), [n_blocks, rows]
    )
    return HeldDesign(design, tf.cast(design, X.dtype), squared_norms)


def _block_design(X, held, block, start, size, structure, layout):
    """The float64 design of rows start:start + size (block `block`), held or built."""
    if held is not None:
        return held.design[block][:, :size]
    rows = tf.cast(tf.slice(X, [start, 0], [size, -1]), tf.float64)
    return transposed_design(rows, structure, layout)


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


def _weighted_responsibilities(log_rho, sample_weight):
    """E-step of one block: w_n r_kn, and -sum_nk w_n r_kn log r_kn.

    r_kn = exp(s_kn) / t_n, with s_kn = log rho_kn - max_k log rho_kn and
    t_n = sum_k exp(s_kn). As sum_k r_kn = 1, the entropy is
    sum_n w_n log t_n - sum_nk w_n r_kn s_kn: neither r nor log r is ever
    formed, and one exp per element serves both. Each pass over [k, b] saved
    is about 5% of an iteration on 1e6 x 16 'diag'.

    Parameters
    ----------
    log_rho : Tensor of shape (n_components, n_block), float64
    sample_weight : Tensor of shape (n_block,), float64

    Returns
    -------
    weighted_resp : Tensor of shape (n_components, n_block)
    entropy : scalar Tensor
    """
    shifted = log_rho - tf.reduce_max(log_rho, axis=0, keepdims=True)
    unnormalised = tf.exp(shifted)
    total = tf.reduce_sum(unnormalised, axis=0)  # [b]
    weighted_resp = unnormalised * (sample_weight / total)[None, :]
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
    log_rho = _block_log_rho(X, held, coefficients, offset, structure)

    def statistics_of_block(block, start, size):
        weight = tf.slice(sample_weight, [start], [size])
        design_sum = _block_design(X, held, block, start, size, structure, layout)

        def e_step():
            return _weighted_responsibilities(log_rho(block, size, design_sum), weight)

        if resp_init is None:
            weighted_resp, entropy = e_step()
        else:
            weighted_resp, entropy = tf.cond(
                use_resp_init,
                lambda: _given_responsibilities(resp_init, weight, start, size),
                e_step,
            )
        return _design_sums(design_sum, weighted_resp), entropy

    totals = _sum_over_blocks(
        n_samples,
        block_rows(n_features, structure),
        statistics_of_block,
        _zero_totals(tf.shape(coefficients)[0], tf.shape(coefficients)[1]),
    )
    return unpack_statistics(*totals, n_features, structure, layout)


def _block_log_rho(X, held, coefficients, offset, structure):
    """log rho_kn = offset_k - E[(x_n - m_k)^T Lambda_k (x_n - m_k)] / 2, by block.

    Returns
    -------
    log_rho : callable
        log_rho(block, size, design_t) gives the float64 [k, b] log rho of the
        `size` rows of block number `block`, whose float64 design is design_t:
        one GEMM in X's dtype, with the rows whose rounding bound fails redone
        in float64 (see the module's comment).
    """
    n_features = tf.shape(X)[1]
    # The GEMM yields log rho directly, the offset carried by the constant
    # feature: each pass over [k, b] saved is about 4% of an iteration on
    # 1e6 x 16 'diag'.
    half_coefficients = -0.5 * coefficients  # a power of two: exact
    constant_feature = tf.one_hot(
        _constant_feature(n_features, structure),
        tf.shape(coefficients)[1],
        dtype=tf.float64,
    )
    log_rho_coefficients = half_coefficients + offset[:, None] * constant_feature

    def in_float64(design_t):
        # Components run along the first axis: with the design transposed,
        # c @ d then needs no transposed operand, which measured faster for
        # 'full'.
        return tf.linalg.matmul(log_rho_coefficients, design_t)  # [k, b]

    compute_dtype = X.dtype
    # The E-step GEMM of float32 X runs in float32 where that pays: on a held
    # design's float32 copy, and on a Wishart's design, (D + 1)(D + 2) / 2 wide,
    # cast per block. A 'diag' or 'spherical' design built per block is only
    # 2 D + 1 or D + 2 wide, and its cast cost more than the float32 GEMM saved:
    # 21 warm iterations on 1e6 x 16 float32 'diag' took 4.55-4.60 s that way,
    # 4.25-4.40 s in float64.
    if compute_dtype == tf.float64 or (held is None and structure.family != "wishart"):
        return lambda block, size, design_t: in_float64(design_t)

    low_coefficients = tf.cast(half_coefficients, compute_dtype)
    n_design = tf.cast(tf.shape(coefficients)[1], tf.float64)
    # |fl(d . c) - d . c| <~ (1 + sqrt(m)) eps ||d|| ||c||, and
    # ||d(x)|| <= ||x_a||^2 = ||x||^2 + 1 for every structure's design.
    error_per_design_norm = (
        (1.0 + tf.sqrt(n_design))
        * np.finfo(np.float32).eps
        * tf.reduce_max(tf.norm(coefficients, axis=1))
    )

    def log_rho(block, size, design_t):
        if held is not None:
            design_norms = held.squared_norms[block][:size]
            low_design = held.low[block][:, :size]
        else:
            # Built per block, the design is a Wishart's, whose first n rows
            # (window 0) are the squares x_a[i]^2: two ops, not a pass over X.
            design_norms = tf.reduce_sum(design_t[: n_features + 1], axis=0)  # [b]
            low_design = tf.cast(design_t, compute_dtype)
        # Only the GEMM runs in the compute dtype. TF's vectorised float32 exp
        # rounds a block's ragged tail differently, so a float32 softmax made a
        # row's r depend, by an ulp, on where its block ended. The offset is
        # added in float64: in float32, folded into the constant term, it
        # measurably moved the ELBO.
        low = offset[:, None] + tf.cast(
            tf.linalg.matmul(low_coefficients, low_design), tf.float64
        )  # [k, b]
        # The bound is checked per row: at D = 32 nearly every block of 4096
        # rows held one whose bound failed, which sent whole blocks to float64
        # and made float32 fits slower than float64 ones.
        exposed = error_per_design_norm * design_norms >= _MAX_MAHALANOBIS_ERROR
        return tf.cond(
            tf.reduce_any(exposed),
            lambda: _in_float64_where(exposed, low, design_t, in_float64),
            lambda: low,
        )

    return log_rho


def _in_float64_where(exposed, low_log_rho, design_t, in_float64):
    """log rho with the columns of the `exposed` rows redone by `in_float64`.

    Parameters
    ----------
    exposed : bool Tensor of shape (n_block,)
    low_log_rho : float64 Tensor of shape (n_components, n_block)
        log rho from the float32 GEMM.
    design_t : float64 Tensor of shape (n_design, n_block)
    in_float64 : callable
        The float64 GEMM of a (n_design, n_rows) design, giving (n_components,
        n_rows).

    Returns
    -------
    log_rho : float64 Tensor of shape (n_components, n_block)
    """
    rows = tf.where(exposed)  # [r, 1]
    exact = in_float64(tf.gather(design_t, rows[:, 0], axis=1))  # [k, r]
    return tf.transpose(
        tf.tensor_scatter_nd_update(
            tf.transpose(low_log_rho), rows, tf.transpose(exact)
        )
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
        design = _block_design(X, None, block, start, size, structure, layout)
        weighted_resp, entropy = _given_responsibilities(
            resp, tf.slice(sample_weight, [start], [size]), start, size
        )
        return _design_sums(design, weighted_resp), entropy

    totals = _sum_over_blocks(
        n_samples,
        block_rows(n_features, structure),
        statistics_of_block,
        _zero_totals(tf.shape(resp)[1], _n_design(n_features, structure)),
    )
    return unpack_statistics(*totals, n_features, structure, layout)
