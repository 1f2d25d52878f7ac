"""The one E-step: statistics of a chunk of rows, by blocks, as two GEMMs per block."""

# Per block of rows the E-step and the statistics are both GEMMs against the
# block's second-order design features d(x) (the packed upper triangle of x x^T
# and x for 'full' and 'tied'; x * x and x for 'diag'; ||x||^2 and x for
# 'spherical'):
#
#   E[(x - m_k)^T Lambda_k (x - m_k)] = d(x) . c_k + b_k            (E-step)
#   sum_n w_n r_nk d(x_n)                                            (statistics)
#
# The design is built per block, so no (n_samples, n_design) array is held.
#
# Precision. Sums over samples are float64 whatever X's dtype: float32 sums over
# 1e5+ rows lose the digits that the scatter (second moment minus squared mean)
# and the convergence test need. The E-step GEMM runs in X's dtype, except where
# the float32 expansion d(x) . c_k could lose more than _MAX_MAHALANOBIS_ERROR:
# an ill-conditioned E[Lambda] makes the terms of d . c large while their sum is
# small. The bound is checked per block, so a few far outliers or one
# near-singular component send only the blocks that need it to float64.


import numpy as np
import tensorflow as tf

from skbayesmix._state import Statistics
from skbayesmix._tfp_backend._maths import log_rho_offset, precision_times

# Rows per block: the [block, n_components] temporaries stay in cache, and the
# two GEMMs per block are still large enough to run at full speed.
BLOCK_SIZE = 4096

# Largest tolerated rounding error of a float32 Mahalanobis term, in nats * 2.
_MAX_MAHALANOBIS_ERROR = 0.05


def _upper_triangle_indices(n_features):
    """Rows and columns (i <= j) of the upper triangle, in row-major order.

    Returns
    -------
    rows, cols : int32 Tensor of shape (n_features * (n_features + 1) / 2,)
    """
    rows, cols = tf.meshgrid(tf.range(n_features), tf.range(n_features), indexing="ij")
    upper = rows <= cols
    return tf.boolean_mask(rows, upper), tf.boolean_mask(cols, upper)


def transposed_design(X, structure):
    """The second-order design features of a block of rows, transposed.

    Transposed because gathering whole rows of X^T (contiguous) is several times
    faster than gathering columns of X.

    Parameters
    ----------
    X : Tensor of shape (n_block, n_features)
    structure : CovarianceStructure

    Returns
    -------
    design_t : Tensor of shape (n_design, n_block)
        [x_i x_j for i <= j; x] for a Wishart, [x * x; x] for 'diag',
        [||x||^2; x] for 'spherical'.
    """
    xt = tf.transpose(X)  # [d, b]
    if structure.family == "wishart":
        rows, cols = _upper_triangle_indices(tf.shape(X)[1])
        second_order = tf.gather(xt, rows) * tf.gather(xt, cols)  # [m, b]
    elif structure.scale_inverse_rank == 1:
        second_order = xt * xt
    else:
        second_order = tf.reduce_sum(xt * xt, axis=0, keepdims=True)
    return tf.concat([second_order, xt], axis=0)


def mahalanobis_coefficients(means, moments, structure):
    """c_k and b_k with E[(x - m_k)^T Lambda_k (x - m_k)] = d(x) . c_k + b_k.

    (x - m)^T A (x - m) = x^T A x - 2 x^T A m + m^T A m, with A = E[Lambda_k].
    For a Wishart the packed x_i x_j (i < j) stand for both x_i x_j and x_j x_i,
    hence the factor 2 off the diagonal.

    Returns
    -------
    coefficients : Tensor of shape (n_components, n_design)
    constant : Tensor of shape (n_components,)
    """
    n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
    precision = moments.expected_precision
    if structure.family == "wishart":
        rows, cols = _upper_triangle_indices(n_features)
        packed = tf.gather(
            tf.reshape(precision, [tf.shape(precision)[0], -1]),
            rows * n_features + cols,
            axis=1,
        )  # [f, m]
        packed *= tf.cast(tf.where(rows == cols, 1.0, 2.0), packed.dtype)[None, :]
        second_order = tf.broadcast_to(packed, [n_components, tf.shape(packed)[1]])
    elif structure.scale_inverse_rank == 1:
        second_order = precision
    else:
        second_order = precision[:, None]
    precision_means = precision_times(precision, means, structure)  # [k, d]
    coefficients = tf.concat([second_order, -2.0 * precision_means], axis=1)
    return coefficients, tf.reduce_sum(precision_means * means, axis=1)


def unpack_statistics(counts, design_moments, resp_entropy, n_features, structure):
    """Statistics from the weighted sums of the design features.

    Parameters
    ----------
    counts : Tensor of shape (n_components,)
    design_moments : Tensor of shape (n_components, n_design)
        sum_n w_n r_nk d(x_n).
    resp_entropy : scalar Tensor

    Returns
    -------
    statistics : Statistics
    """
    n_second_order = tf.shape(design_moments)[1] - n_features
    first_moment = design_moments[:, n_second_order:]  # [k, d]
    second_order = design_moments[:, :n_second_order]  # [k, m]
    if structure.family == "wishart":
        rows, cols = _upper_triangle_indices(n_features)
        # Both (i, j) and (j, i) of the square matrix read packed column (i, j).
        position = tf.range(n_second_order)
        index = tf.scatter_nd(
            (rows * n_features + cols)[:, None], position, [n_features * n_features]
        )
        index = tf.tensor_scatter_nd_update(
            index, (cols * n_features + rows)[:, None], position
        )
        second_moment = tf.reshape(
            tf.gather(second_order, index, axis=1), [-1, n_features, n_features]
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


def _log_responsibilities(design_t, coefficients, constant, offset):
    """E-step of one block: log r_nk, in the dtype of its inputs.

    log rho_nk = offset_k - (d(x_n) . c_k + b_k) / 2,
    log r_nk = log rho_nk - logsumexp_k log rho_nk

    Returns
    -------
    log_resp : Tensor of shape (n_block, n_components)
    """
    mahalanobis = tf.linalg.matmul(
        design_t, coefficients, transpose_a=True, transpose_b=True
    )  # [b, k]
    # b_k joins the quadratic before the offset: in float32, folding it into the
    # offset first measurably moved the ELBO.
    log_rho = offset[None, :] - 0.5 * (mahalanobis + constant[None, :])
    return tf.nn.log_softmax(log_rho, axis=1)


def _sum_weighted_design(design_t, sample_weight, resp):
    """N_k and sum_n w_n r_nk d(x_n) of one block, in float64.

    Returns
    -------
    counts : Tensor of shape (n_components,)
    design_moments : Tensor of shape (n_components, n_design)
    """
    weighted_resp = resp * sample_weight[:, None]  # [b, k]
    design_moments = tf.linalg.matmul(
        weighted_resp, design_t, transpose_a=True, transpose_b=True
    )
    return tf.reduce_sum(weighted_resp, axis=0), design_moments


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
    X, sample_weight, posterior, moments, reg_covar, structure, weight_type
):
    """E-step under q(theta), then the statistics of q(z), over the rows of X.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features), float32 or float64
    sample_weight : Tensor of shape (n_samples,), float64
    posterior : Posterior of float64 Tensors
    moments : PrecisionMoments of `posterior`, float64
    reg_covar : scalar float64 Tensor

    Returns
    -------
    statistics : Statistics
        float64, with the weighted entropy -sum_nk w_n r_nk log r_nk.
    """
    n_samples, n_features = tf.shape(X)[0], tf.shape(X)[1]
    coefficients, constant = mahalanobis_coefficients(
        posterior.means, moments, structure
    )  # [k, m], [k]
    offset = log_rho_offset(posterior, moments, reg_covar, weight_type)  # [k]
    compute_dtype = X.dtype
    low_precision = compute_dtype != tf.float64
    if low_precision:
        low = (
            tf.cast(coefficients, compute_dtype),
            tf.cast(constant, compute_dtype),
            tf.cast(offset, compute_dtype),
        )
        n_design = tf.cast(tf.shape(coefficients)[1], tf.float64)
        # |fl(d . c) - d . c| <~ (1 + sqrt(m)) eps ||d|| ||c||, and
        # ||d(x)||^2 <= ||x||^4 + ||x||^2 for every structure's design.
        error_per_design_norm = (
            (1.0 + tf.sqrt(n_design))
            * np.finfo(np.float32).eps
            * tf.reduce_max(tf.norm(coefficients, axis=1))
        )

    def statistics_of_block(start, size):
        block = tf.slice(X, [start, 0], [size, -1])
        weight = tf.slice(sample_weight, [start], [size])
        block_sum = tf.cast(block, tf.float64)
        design_sum = transposed_design(block_sum, structure)  # [m, b], float64

        def high():
            return _log_responsibilities(design_sum, coefficients, constant, offset)

        if low_precision:
            squared_norm = tf.reduce_max(tf.reduce_sum(tf.square(block_sum), axis=1))
            design_norm = tf.sqrt(squared_norm * squared_norm + squared_norm)

            def low_precision_log_resp():
                return tf.cast(
                    _log_responsibilities(tf.cast(design_sum, compute_dtype), *low),
                    tf.float64,
                )

            log_resp = tf.cond(
                error_per_design_norm * design_norm < _MAX_MAHALANOBIS_ERROR,
                low_precision_log_resp,
                high,
            )
        else:
            log_resp = high()
        resp = tf.exp(log_resp)
        counts, design_moments = _sum_weighted_design(design_sum, weight, resp)
        entropy = -tf.reduce_sum(weight[:, None] * resp * log_resp)
        return counts, design_moments, entropy

    totals = _sum_over_blocks(
        n_samples,
        statistics_of_block,
        _zero_totals(tf.shape(coefficients)[0], tf.shape(coefficients)[1]),
    )
    return unpack_statistics(*totals, n_features, structure)


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

    def statistics_of_block(start, size):
        block = tf.cast(tf.slice(X, [start, 0], [size, -1]), tf.float64)
        weight = tf.slice(sample_weight, [start], [size])
        resp_block = tf.cast(tf.slice(resp, [start, 0], [size, -1]), tf.float64)
        counts, design_moments = _sum_weighted_design(
            transposed_design(block, structure), weight, resp_block
        )
        # 0 log 0 = 0: hard initial assignments have zero entropy.
        plogp = tf.math.multiply_no_nan(tf.math.log(resp_block), resp_block)
        entropy = -tf.reduce_sum(weight[:, None] * plogp)
        return counts, design_moments, entropy

    totals = _sum_over_blocks(
        n_samples,
        statistics_of_block,
        _zero_totals(tf.shape(resp)[1], _n_design(n_features, structure)),
    )
    return unpack_statistics(*totals, n_features, structure)
