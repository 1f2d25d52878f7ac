"""The one E-step: statistics of a chunk of rows, by blocks, as two GEMMs per block."""

# Per block of rows the E-step and the statistics are both GEMMs against the
# block's second-order design features d(x) (the packed upper triangle of x x^T
# and x for 'full' and 'tied'; x * x and x for 'diag'; ||x||^2 and x for
# 'spherical'):
#
#   E[(x - m_k)^T Lambda_k (x - m_k)] = d(x) . c_k + b_k            (E-step)
#   sum_n w_n r_nk d(x_n)                                            (statistics)
#
# A full-batch fit builds the design once, in one slab per block, when it fits
# HELD_DESIGN_MAX_ELEMENTS; otherwise, and for chunks fed one at a time, it is
# built per block, so no (n_samples, n_design) array beyond that budget is held.
#
# Precision. Sums over samples are float64 whatever X's dtype: float32 sums over
# 1e5+ rows lose the digits that the scatter (second moment minus squared mean)
# and the convergence test need. The E-step GEMM runs in X's dtype, except where
# the float32 expansion d(x) . c_k could lose more than _MAX_MAHALANOBIS_ERROR:
# an ill-conditioned E[Lambda] makes the terms of d . c large while their sum is
# small. The bound is checked per block, so a few far outliers or one
# near-singular component send only the blocks that need it to float64.

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from skbayesmix._state import Statistics
from skbayesmix._tfp_backend._maths import precision_times

# Rows per block: the [block, n_components] temporaries stay in cache, and the
# two GEMMs per block are still large enough to run at full speed.
BLOCK_SIZE = 4096

# Largest tolerated rounding error of a float32 Mahalanobis term, in nats * 2.
_MAX_MAHALANOBIS_ERROR = 0.05

# Largest design (in float64 elements, 256 MB) that a full-batch fit builds once
# and keeps for all its iterations. Rebuilding it per block and iteration cost
# 20-45% of an iteration on 1e6 x 16 'diag' and 6e4 x 16 'full'; beyond this
# size, as for 'full' on 1e6 rows, the design is built per block and never held.
HELD_DESIGN_MAX_ELEMENTS = 2**25


class DesignLayout(NamedTuple):
    """Where each packed second-order feature sits, for a Wishart's design.

    Built once per graph (`design_layout`) and passed down, so that the design,
    the E-step coefficients and the unpacking of the sums share one set of index
    ops instead of each building its own: graph size is what a fresh process
    pays for, in tracing and in TF's first-call set-up.

    rows, cols : int32 Tensor of shape (n_second_order,)
        (i, j), i <= j, of each packed feature x_i x_j, in row-major order.
    square : int32 Tensor of shape (n_second_order,)
        i * n_features + j: the position of (i, j) in a flattened square matrix.
    packed : int32 Tensor of shape (n_features * n_features,)
        For each position of a flattened square matrix, its packed feature:
        both (i, j) and (j, i) read (i, j).
    """

    rows: Any
    cols: Any
    square: Any
    packed: Any


def design_layout(n_features, structure):
    """The `DesignLayout` of a Wishart's design; None for the Gamma family."""
    if structure.family != "wishart":
        return None
    # tf.where lists the True entries in row-major order, as one op; a
    # boolean_mask here cost 40-100 ms of tracing per call.
    upper = tf.linalg.band_part(tf.ones([n_features, n_features], tf.bool), 0, -1)
    indices = tf.cast(tf.where(upper), tf.int32)  # [m, 2]
    rows, cols = indices[:, 0], indices[:, 1]
    square = rows * n_features + cols
    position = tf.range(tf.shape(rows)[0])
    packed = tf.tensor_scatter_nd_update(
        tf.scatter_nd(square[:, None], position, [n_features * n_features]),
        (cols * n_features + rows)[:, None],
        position,
    )
    return DesignLayout(rows, cols, square, packed)


def transposed_design(X, structure, layout):
    """The second-order design features of a block of rows, transposed.

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
        [x_i x_j for i <= j; x] for a Wishart, [x * x; x] for 'diag',
        [||x||^2; x] for 'spherical'.
    """
    xt = tf.transpose(X)  # [d, b]
    if structure.family == "wishart":
        second_order = tf.gather(xt, layout.rows) * tf.gather(xt, layout.cols)
    elif structure.scale_inverse_rank == 1:
        second_order = xt * xt
    else:
        second_order = tf.reduce_sum(xt * xt, axis=0, keepdims=True)
    return tf.concat([second_order, xt], axis=0)


def holds_design(n_samples, n_features, structure):
    """Whether a full-batch fit of this size holds its design (`held_design`).

    Decided in NumPy per fit, so that each compiled loop has only the one way of
    getting a block's design that it uses: a graph with both cost a fresh
    process about a tenth more tracing and first-call set-up.
    """
    return n_samples * _n_design(n_features, structure) <= HELD_DESIGN_MAX_ELEMENTS


def held_design(X, structure, layout):
    """The float64 design of all rows of X, by blocks, to hold across iterations.

    Stored as one (n_design, BLOCK_SIZE) slab per block of rows, so that each
    block reads a contiguous slab, the layout the per-block GEMMs want.

    Returns
    -------
    design_t : Tensor of shape (n_blocks, n_design, BLOCK_SIZE)
        `transposed_design` of every row, zero-padded to whole blocks.
    """
    n_samples = tf.shape(X)[0]
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    padded = tf.pad(
        tf.cast(X, tf.float64), [[0, n_blocks * BLOCK_SIZE - n_samples], [0, 0]]
    )
    design_t = transposed_design(padded, structure, layout)  # [m, n_blocks * B]
    slabs = tf.reshape(design_t, [tf.shape(design_t)[0], n_blocks, BLOCK_SIZE])
    return tf.transpose(slabs, [1, 0, 2])


def _block_design(X, design_t, start, size, structure, layout):
    """The float64 design of rows start:start + size, held or built now."""
    if design_t is not None:
        return design_t[start // BLOCK_SIZE][:, :size]
    block = tf.cast(tf.slice(X, [start, 0], [size, -1]), tf.float64)
    return transposed_design(block, structure, layout)


def mahalanobis_coefficients(means, moments, structure, layout):
    """c_k and b_k with E[(x - m_k)^T Lambda_k (x - m_k)] = d(x) . c_k + b_k.

    (x - m)^T A (x - m) = x^T A x - 2 x^T A m + m^T A m, with A = E[Lambda_k].
    For a Wishart the packed x_i x_j (i < j) stand for both x_i x_j and x_j x_i,
    hence the factor 2 off the diagonal.

    Returns
    -------
    coefficients : Tensor of shape (n_components, n_design)
    constant : Tensor of shape (n_components,)
    """
    precision = moments.expected_precision
    if structure.family == "wishart":
        packed = tf.gather(
            tf.reshape(precision, [tf.shape(precision)[0], -1]), layout.square, axis=1
        )  # [f, m]
        packed *= tf.cast(tf.where(layout.rows == layout.cols, 1.0, 2.0), packed.dtype)
        second_order = tf.broadcast_to(
            packed, [tf.shape(means)[0], tf.shape(packed)[1]]
        )
    elif structure.scale_inverse_rank == 1:
        second_order = precision
    else:
        second_order = precision[:, None]
    precision_means = precision_times(precision, means, structure)  # [k, d]
    coefficients = tf.concat([second_order, -2.0 * precision_means], axis=1)
    return coefficients, tf.reduce_sum(precision_means * means, axis=1)


def unpack_statistics(
    counts, design_moments, resp_entropy, n_features, structure, layout
):
    """Statistics from the weighted sums of the design features.

    Parameters
    ----------
    counts : Tensor of shape (n_components,)
    design_moments : Tensor of shape (n_components, n_design)
        sum_n w_n r_nk d(x_n).
    resp_entropy : scalar Tensor
    n_features : scalar int32 Tensor
    structure : CovarianceStructure
    layout : DesignLayout or None

    Returns
    -------
    statistics : Statistics
    """
    n_second_order = tf.shape(design_moments)[1] - n_features
    first_moment = design_moments[:, n_second_order:]  # [k, d]
    second_order = design_moments[:, :n_second_order]  # [k, m]
    if structure.family == "wishart":
        second_moment = tf.reshape(
            tf.gather(second_order, layout.packed, axis=1),
            [-1, n_features, n_features],
        )
        if structure.shared:
            second_moment = tf.reduce_sum(second_moment, axis=0, keepdims=True)
    elif structure.scale_inverse_rank == 1:
        second_moment = second_order
    else:
        second_moment = second_order[:, 0] / tf.cast(n_features, counts.dtype)
    return Statistics(counts, first_moment, second_moment, resp_entropy)


def _sum_over_blocks(n_samples, statistics_of_block, initial):
    """sum_b statistics_of_block(start_b, size_b) over blocks of BLOCK_SIZE rows.

    The block count depends on n_samples, known only at run time; the last block
    is ragged.
    """
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE

    def add_block(block, totals):
        start = block * BLOCK_SIZE
        size = tf.minimum(BLOCK_SIZE, n_samples - start)
        stats = statistics_of_block(start, size)
        return block + 1, tf.nest.map_structure(tf.add, totals, stats)

    _, totals = tf.while_loop(
        lambda block, totals: block < n_blocks,
        add_block,
        (tf.constant(0), initial),
        parallel_iterations=1,
    )
    return totals


def _mahalanobis(design_t, coefficients, constant):
    """d(x_n) . c_k + b_k of one block, in the dtype of its inputs.

    Components run along the first axis: with the design transposed, c @ d^T
    then needs no transposed operand, which measured faster for 'full'.

    Returns
    -------
    mahalanobis : Tensor of shape (n_components, n_block)
    """
    # b_k joins the quadratic before the offset: in float32, folding it into the
    # offset first measurably moved the ELBO.
    return tf.linalg.matmul(coefficients, design_t) + constant[:, None]


def _responsibilities(mahalanobis, offset):
    """E-step of one block: r_kn and log r_kn, in float64.

    log rho_kn = offset_k - mahalanobis_kn / 2,
    log r_kn = log rho_kn - logsumexp_k log rho_kn

    Returns
    -------
    resp, log_resp : Tensor of shape (n_components, n_block)
    """
    log_rho = offset[:, None] - 0.5 * mahalanobis
    # One exp per element serves both r and log r (log_softmax and then exp
    # would take two, which large fits feel).
    shifted = log_rho - tf.reduce_max(log_rho, axis=0, keepdims=True)
    unnormalised = tf.exp(shifted)
    total = tf.reduce_sum(unnormalised, axis=0, keepdims=True)
    return unnormalised / total, shifted - tf.math.log(total)


def _given_responsibilities(resp, start, size):
    """Rows start:start + size of given responsibilities, as r_kn and log r_kn."""
    resp_block = tf.transpose(
        tf.cast(tf.slice(resp, [start, 0], [size, -1]), tf.float64)
    )  # [k, b]
    return resp_block, tf.math.log(resp_block)


def _block_statistics(design_t, sample_weight, resp, log_resp):
    """N_k, sum_n w_n r_kn d(x_n) and -sum_nk w_n r_kn log r_kn of one block.

    Parameters
    ----------
    design_t : Tensor of shape (n_design, n_block), float64
    sample_weight : Tensor of shape (n_block,)
    resp, log_resp : Tensor of shape (n_components, n_block), float64

    Returns
    -------
    counts : Tensor of shape (n_components,)
    design_moments : Tensor of shape (n_components, n_design)
    entropy : scalar Tensor
    """
    weighted_resp = resp * sample_weight[None, :]  # [k, b]
    # d^T (w r)^T transposes only the small [k, b] operand.
    design_moments = tf.linalg.matmul(design_t, weighted_resp, transpose_b=True)
    # 0 log 0 = 0: hard initial assignments have zero entropy.
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(log_resp, weighted_resp))
    return (
        tf.reduce_sum(weighted_resp, axis=1),
        tf.transpose(design_moments),
        entropy,
    )


def _zero_totals(n_components, n_design):
    return (
        tf.zeros([n_components], tf.float64),
        tf.zeros([n_components, n_design], tf.float64),
        tf.constant(0.0, tf.float64),
    )


def _n_design(n_features, structure):
    if structure.family == "wishart":
        return n_features * (n_features + 1) // 2 + n_features
    if structure.scale_inverse_rank == 1:
        return 2 * n_features
    return 1 + n_features


def expected_statistics(
    X,
    sample_weight,
    posterior,
    moments,
    offset,
    structure,
    design_t=None,
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
    design_t : Tensor, default=None
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
    coefficients, constant = mahalanobis_coefficients(
        posterior.means, moments, structure, layout
    )  # [k, m], [k]
    compute_dtype = X.dtype
    low_precision = compute_dtype != tf.float64
    if low_precision:
        low = (tf.cast(coefficients, compute_dtype), tf.cast(constant, compute_dtype))
        n_design = tf.cast(tf.shape(coefficients)[1], tf.float64)
        # |fl(d . c) - d . c| <~ (1 + sqrt(m)) eps ||d|| ||c||, and
        # ||d(x)||^2 <= ||x||^4 + ||x||^2 for every structure's design.
        error_per_design_norm = (
            (1.0 + tf.sqrt(n_design))
            * np.finfo(np.float32).eps
            * tf.reduce_max(tf.norm(coefficients, axis=1))
        )

    def statistics_of_block(start, size):
        weight = tf.slice(sample_weight, [start], [size])
        design_sum = _block_design(X, design_t, start, size, structure, layout)

        def mahalanobis():
            if not low_precision:
                return _mahalanobis(design_sum, coefficients, constant)
            # ||x||^2 is the sum of the design's x rows squared.
            squared_norm = tf.reduce_max(
                tf.reduce_sum(tf.square(design_sum[-n_features:]), axis=0)
            )
            design_norm = tf.sqrt(squared_norm * squared_norm + squared_norm)

            # Only the GEMM runs in the compute dtype. TF's vectorised float32 exp
            # rounds a block's ragged tail differently, so a float32 softmax made
            # a row's r depend, by an ulp, on where its block ended.
            return tf.cond(
                error_per_design_norm * design_norm < _MAX_MAHALANOBIS_ERROR,
                lambda: tf.cast(
                    _mahalanobis(tf.cast(design_sum, compute_dtype), *low), tf.float64
                ),
                lambda: _mahalanobis(design_sum, coefficients, constant),
            )

        def e_step():
            return _responsibilities(mahalanobis(), offset)

        if resp_init is None:
            resp, log_resp = e_step()
        else:
            resp, log_resp = tf.cond(
                use_resp_init,
                lambda: _given_responsibilities(resp_init, start, size),
                e_step,
            )
        return _block_statistics(design_sum, weight, resp, log_resp)

    totals = _sum_over_blocks(
        n_samples,
        statistics_of_block,
        _zero_totals(tf.shape(coefficients)[0], tf.shape(coefficients)[1]),
    )
    return unpack_statistics(*totals, n_features, structure, layout)


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

    def statistics_of_block(start, size):
        design = _block_design(X, None, start, size, structure, layout)
        return _block_statistics(
            design,
            tf.slice(sample_weight, [start], [size]),
            *_given_responsibilities(resp, start, size),
        )

    totals = _sum_over_blocks(
        n_samples,
        statistics_of_block,
        _zero_totals(tf.shape(resp)[1], _n_design(n_features, structure)),
    )
    return unpack_statistics(*totals, n_features, structure, layout)
