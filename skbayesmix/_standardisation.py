"""The shift and scalar scale of X, and how the model's parameters map through them."""

# The backend works on standardised data, x_s = (x - shift) / scale, so that its
# numbers are near 1 whatever the data's offset or scale (1e8 offsets, 1e+-100
# scales). The model is equivariant under this map when the prior maps with it,
# so nothing is lost: means shift and scale, scale matrices scale by scale^2,
# and the ELBO changes by the log-Jacobian of the map. The scale is kept as two
# factors, max_abs and spread, because their product can overflow for data near
# the float range.

from typing import NamedTuple

import numpy as np

from skbayesmix._state import Posterior, Prior

__all__ = [
    "DataMoments",
    "Standardisation",
    "covariance_from_scatter",
    "data_moments",
    "merge_moments",
    "no_moments",
    "piece_moments",
    "row_pieces",
    "weighted_scatter",
]

# Lower bound on reg_covar in standardised units. The backend's float64 scatter
# (second moment minus squared mean) carries a rounding error near 1e-15 *
# n_features per sample; a floor well above it keeps collinear or n <= d data
# positive definite, and is far below any resolvable variance.
_MIN_STANDARDISED_REG_COVAR = 1e-10

# Rows per piece of a pass over X: its float64 temporaries stay in cache. Whole-X
# temporaries (several copies of 64-128 MB on 1e6 x 16) cost 0.3-0.6 s per fit,
# most of it in page faults.
REDUCE_ROWS = 2**14


class DataMoments(NamedTuple):
    """Exact weighted moments of X, reduced over pieces of rows.

    total_weight : float
        sum_n w_n.
    n_positive : int
        Rows of positive weight.
    shift : ndarray of shape (n_features,)
        The weighted mean of X.
    max_abs : float
        The largest |x| over rows of positive weight (0 when all are 0).
    scaled_scatter : ndarray of shape (n_features, n_features) or (n_features,)
        sum_n w_n (x_n - shift)(x_n - shift)^T / max_abs^2, or its diagonal
        (in units of 1 when max_abs is 0). With missing entries, the sum runs
        over the observed pairs only (missing entries count as at the mean).
    missing : MissingMoments or None
        None when every entry is observed.
    """

    total_weight: float
    n_positive: int
    shift: np.ndarray
    max_abs: float
    scaled_scatter: np.ndarray
    missing: object = None


class MissingMoments(NamedTuple):
    """What merging moments of rows with missing entries needs besides DataMoments.

    With missing entries each feature has its own weight and mean, over its
    observed entries. Re-centring a piece's scatter on the merged means then
    needs, per pair (i, j), the weight of the rows observing both and the sum of
    feature j's centred values over them.

    observed_weight : ndarray of shape (n_features,)
        sum_n w_n o_nj, o_nj = 1 where x_nj is observed.
    pair_weight : ndarray of shape (n_features, n_features) or None
        sum_n w_n o_ni o_nj; None for a diagonal scatter.
    pair_sums : ndarray of shape (n_features, n_features) or None
        sum_n w_n o_ni o_nj (x_nj - shift_j) / max_abs; None for a diagonal
        scatter.
    """

    observed_weight: np.ndarray
    pair_weight: object
    pair_sums: object


class Standardisation(NamedTuple):
    """x_s = ((x / max_abs) - shift / max_abs) / spread.

    shift : ndarray of shape (n_features,)
        The weighted mean of X.
    max_abs : float
        The largest |x| over rows of positive weight.
    spread : float
        The root mean squared deviation of X / max_abs, over samples and features.
    """

    shift: np.ndarray
    max_abs: float
    spread: float

    @classmethod
    def from_data(cls, X, sample_weight=None, reg_covar=0.0):
        """Zero weighted mean and unit mean variance, from the rows of X.

        Weights act as repetitions: rows of weight zero do not count, so the map
        is the same as for X without them.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        sample_weight : ndarray of shape (n_samples,), default=None
        reg_covar : float, default=0.0
            When X spreads less than sqrt(reg_covar), the scale is sqrt(reg_covar)
            instead, so that reg_covar stays O(1) and identical points do not
            blow it up.

        Returns
        -------
        standardisation : Standardisation
        """
        moments = data_moments(row_pieces(X, sample_weight), X.shape[1], 1)
        return cls.from_data_moments(moments, reg_covar)

    @classmethod
    def from_data_moments(cls, moments, reg_covar=0.0):
        """The map from the `DataMoments` of X (see `from_data`).

        Returns
        -------
        standardisation : Standardisation
        """
        scatter = moments.scaled_scatter
        variances = np.diag(scatter) if scatter.ndim == 2 else scatter
        spread = 0.0
        if moments.missing is not None:
            # Each feature's variance over its own observed entries.
            spread = float(
                np.sqrt(np.mean(variances / moments.missing.observed_weight))
            )
        elif moments.total_weight > 0:
            spread = float(
                np.sqrt(np.sum(variances) / (moments.total_weight * variances.size))
            )
        # All-zero data have max_abs 0; their map is then a shift by 0 in units 1.
        max_abs = moments.max_abs if moments.max_abs > 0 else 1.0
        return cls.from_moments(moments.shift, max_abs, spread, reg_covar)

    @classmethod
    def from_moments(cls, shift, max_abs, spread, reg_covar=0.0):
        """The map from already reduced moments, guarding degenerate spreads.

        Returns
        -------
        standardisation : Standardisation
        """
        if spread == 0.0:
            spread = 1.0
        if max_abs * spread < np.sqrt(reg_covar):
            spread = float(np.sqrt(reg_covar)) / max_abs
        return cls(np.asarray(shift, dtype=np.float64), float(max_abs), float(spread))

    def transform(self, X):
        """x_s for each row of X, in X's dtype.

        Returns
        -------
        X_standardised : ndarray of shape (n_samples, n_features)
        """
        X_standardised = np.empty(X.shape, X.dtype)
        shift = self.shift / self.max_abs
        # Piece by piece: the float64 temporaries stay small (see REDUCE_ROWS).
        for rows in _pieces(X.shape[0]):
            X_standardised[rows] = (X[rows] / self.max_abs - shift) / self.spread
        return X_standardised

    def covariance_to(self, moments, structure):
        """The weighted sample covariance of X, from its moments, in standardised units.

        Weights count as repetitions (see `covariance_from_scatter`).

        Returns
        -------
        covariance : ndarray of shape `structure.prior_scale_shape(n_features)`
        """
        # Divided twice: spread**2 overflows a Python float (an OverflowError,
        # not inf) when data near 1e-300 are measured in units of sqrt(reg_covar).
        scatter = moments.scaled_scatter / self.spread / self.spread
        observed = None if moments.missing is None else moments.missing.observed_weight
        return covariance_from_scatter(
            scatter, moments.total_weight, structure, observed
        )

    def mean_to(self, mean):
        """A location (mean, mean_prior_) in standardised units."""
        mean = np.asarray(mean, dtype=np.float64)
        return (mean / self.max_abs - self.shift / self.max_abs) / self.spread

    def mean_from(self, mean):
        """A standardised location in data units."""
        return np.asarray(mean) * (self.max_abs * self.spread) + self.shift

    def scale_matrix_to(self, value):
        """A squared quantity (covariance, Psi, reg_covar) in standardised units."""
        value = np.asarray(value, dtype=np.float64)
        return value / self.max_abs / self.max_abs / self.spread / self.spread

    def scale_matrix_from(self, value):
        """A standardised squared quantity in data units; may overflow to inf."""
        scale = self.max_abs * self.spread
        with np.errstate(over="ignore"):
            return np.asarray(value) * scale * scale

    def reg_covar_to(self, reg_covar):
        """reg_covar in standardised units, floored (see the module's floor)."""
        return max(float(self.scale_matrix_to(reg_covar)), _MIN_STANDARDISED_REG_COVAR)

    def prior_to(self, prior):
        """A Prior in data units, as a float64 Prior in standardised units.

        float64 whatever X's dtype: the regularisation floor added to the scale
        would vanish in float32 rounding.
        """
        return Prior(
            np.float64(prior.weight_concentration),
            np.float64(prior.mean_precision),
            self.mean_to(prior.mean),
            np.float64(prior.degrees_of_freedom),
            self.scale_matrix_to(prior.scale_inverse),
        )

    def posterior_to(self, posterior):
        """A Posterior in data units, as a float64 Posterior in standardised units."""
        return Posterior(
            *(np.asarray(p, dtype=np.float64) for p in posterior[:3]),
            self.mean_to(posterior.means),
            np.asarray(posterior.degrees_of_freedom, dtype=np.float64),
            self.scale_matrix_to(posterior.scale_inverse),
        )

    def posterior_from(self, posterior):
        """A standardised Posterior in data units (float64; Psi may overflow)."""
        return Posterior(
            *(np.asarray(p, dtype=np.float64) for p in posterior[:3]),
            self.mean_from(np.asarray(posterior.means, dtype=np.float64)),
            np.asarray(posterior.degrees_of_freedom, dtype=np.float64),
            self.scale_matrix_from(
                np.asarray(posterior.scale_inverse, dtype=np.float64)
            ),
        )

    def log_jacobian(self, total_weight, n_features):
        """log p(X) - log p(X_s): what the ELBO of standardised data lacks.

        Each of the total_weight samples has D coordinates divided by the scale;
        with missing entries, n_features is the mean number observed per sample.
        """
        return -total_weight * n_features * (np.log(self.max_abs) + np.log(self.spread))


def _pieces(n_rows, piece_rows=REDUCE_ROWS):
    return [
        slice(start, min(start + piece_rows, n_rows))
        for start in range(0, n_rows, piece_rows)
    ]


def row_pieces(X, sample_weight=None):
    """(rows, weights) of consecutive pieces of X, for `data_moments`.

    Yields
    ------
    rows : ndarray of shape (n_piece, n_features)
        A view of X.
    weights : ndarray of shape (n_piece,)
        Ones when sample_weight is None.
    """
    for rows in _pieces(X.shape[0]):
        yield (
            X[rows],
            (
                np.ones(rows.stop - rows.start)
                if sample_weight is None
                else sample_weight[rows]
            ),
        )


def data_moments(pieces, n_features, scatter_rank):
    """Weighted mean, max |x| and scatter of rows that come piece by piece.

    Each piece is reduced exactly (`piece_moments`) and merged into the running
    result (`merge_moments`); the result equals the moments of all rows in one
    piece up to rounding. Rows of weight zero count as absent, as everywhere.

    Parameters
    ----------
    pieces : iterable of (ndarray of shape (n_piece, n_features), ndarray)
        Rows and their weights, such as `row_pieces` gives.
    n_features : int
    scatter_rank : {2, 1, 0}
        Full scatter matrix (2) or its diagonal (1, 0).

    Returns
    -------
    moments : DataMoments
    """
    moments = no_moments(n_features, scatter_rank)
    for values, weights in pieces:
        moments = merge_moments(moments, piece_moments(values, weights, scatter_rank))
    return moments


def no_moments(n_features, scatter_rank):
    """The DataMoments of no rows: the identity of `merge_moments`."""
    return DataMoments(
        0.0,
        0,
        np.zeros(n_features),
        0.0,
        np.zeros((n_features,) * max(scatter_rank, 1)),
    )


def piece_moments(values, weights, scatter_rank):
    """The DataMoments of one piece of rows, reduced in two exact passes.

    Returns
    -------
    moments : DataMoments
    """
    positive = weights > 0
    if not np.all(positive):
        values, weights = values[positive], weights[positive]
    if values.shape[0] == 0:
        return no_moments(values.shape[1], scatter_rank)
    observed = ~np.isnan(values)
    if not observed.all():
        return _incomplete_piece_moments(values, weights, observed, scatter_rank)
    max_abs = float(max(np.max(values), -np.min(values)))
    # In units of max |x|, so that no square overflows; centred in place.
    centred = values.astype(np.float64)
    centred /= max_abs if max_abs > 0 else 1.0
    total = float(np.sum(weights))
    mean = weights @ centred / total
    centred -= mean
    scatter = weighted_scatter(centred, weights, scatter_rank == 2)
    return DataMoments(total, int(values.shape[0]), mean * max_abs, max_abs, scatter)


def _incomplete_piece_moments(values, weights, observed, scatter_rank):
    """`piece_moments` of rows with missing (NaN) entries: per-feature moments."""
    max_abs = float(np.nanmax(np.abs(values), initial=0.0))
    scaled = values.astype(np.float64) / (max_abs if max_abs > 0 else 1.0)
    present = observed.astype(np.float64) * weights[:, None]  # [n, d]
    observed_weight = np.sum(present, axis=0)  # [d]
    filled = np.where(observed, scaled, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(
            observed_weight > 0, np.sum(present * filled, 0) / observed_weight, 0.0
        )
    centred = np.where(observed, scaled - mean, 0.0)  # missing entries at the mean
    scatter = weighted_scatter(centred, weights, scatter_rank == 2)
    pair_weight = pair_sums = None
    if scatter_rank == 2:
        pair_weight = present.T @ observed.astype(np.float64)
        pair_sums = present.T @ centred
    return DataMoments(
        float(np.sum(weights)),
        int(values.shape[0]),
        mean * max_abs,
        max_abs,
        scatter,
        MissingMoments(observed_weight, pair_weight, pair_sums),
    )


def _as_missing_moments(moments):
    """A DataMoments' MissingMoments, that of complete rows when it has none."""
    if moments.missing is not None:
        return moments.missing
    n_features = moments.shift.shape[0]
    total = moments.total_weight
    if moments.scaled_scatter.ndim < 2:
        return MissingMoments(np.full(n_features, total), None, None)
    return MissingMoments(
        np.full(n_features, total),
        np.full((n_features, n_features), total),
        np.zeros((n_features, n_features)),
    )


def _recentred(moments, missing, mean, unit):
    """(scatter, pair_sums) of a piece about `mean`, both in units of `unit`."""
    ratio = moments.max_abs / unit
    delta = moments.shift / unit - mean  # [d]
    scatter = moments.scaled_scatter * ratio * ratio
    if missing.pair_weight is None:
        # A feature's centred values sum to 0 over its observed entries.
        return scatter + missing.observed_weight * delta**2, None
    pair_sums = missing.pair_sums * ratio
    scatter = (
        scatter
        + pair_sums.T * delta[None, :]
        + pair_sums * delta[:, None]
        + missing.pair_weight * np.outer(delta, delta)
    )
    return scatter, pair_sums + missing.pair_weight * delta[None, :]


def _merge_incomplete_moments(first, second):
    """`merge_moments` when either side has missing entries."""
    unit = max(first.max_abs, second.max_abs)
    unit = unit if unit > 0 else 1.0
    missing = (_as_missing_moments(first), _as_missing_moments(second))
    observed = missing[0].observed_weight + missing[1].observed_weight
    sums = sum(
        m.observed_weight * (part.shift / unit)
        for m, part in zip(missing, (first, second))
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(observed > 0, sums / observed, 0.0)
    parts = [
        _recentred(part, m, mean, unit) for part, m in zip((first, second), missing)
    ]
    full = missing[0].pair_weight is not None
    return DataMoments(
        first.total_weight + second.total_weight,
        first.n_positive + second.n_positive,
        mean * unit,
        max(first.max_abs, second.max_abs),
        parts[0][0] + parts[1][0],
        MissingMoments(
            observed,
            missing[0].pair_weight + missing[1].pair_weight if full else None,
            parts[0][1] + parts[1][1] if full else None,
        ),
    )


def merge_moments(first, second):
    """The DataMoments of the union of two disjoint sets of rows (Chan's update).

    The merged scatter is in units of the larger max |x| of the two.

    Returns
    -------
    moments : DataMoments
    """
    if second.total_weight <= 0:
        return first
    if first.total_weight <= 0:
        return second
    if first.missing is not None or second.missing is not None:
        return _merge_incomplete_moments(first, second)
    unit = max(first.max_abs, second.max_abs)
    if unit == 0.0:
        return first._replace(
            total_weight=first.total_weight + second.total_weight,
            n_positive=first.n_positive + second.n_positive,
        )
    # Ratios, not squares of max_abs: their product can overflow.
    ratio_first, ratio_second = first.max_abs / unit, second.max_abs / unit
    mean_first = first.shift / unit
    delta = second.shift / unit - mean_first
    total = first.total_weight + second.total_weight
    correction = first.total_weight * second.total_weight / total
    between = np.outer(delta, delta) if first.scaled_scatter.ndim == 2 else delta**2
    scatter = (
        first.scaled_scatter * ratio_first * ratio_first
        + second.scaled_scatter * ratio_second * ratio_second
        + correction * between
    )
    mean = mean_first + delta * (second.total_weight / total)
    return DataMoments(
        total,
        first.n_positive + second.n_positive,
        mean * unit,
        unit,
        scatter,
    )


def weighted_scatter(centred, weights, full):
    """sum_n w_n c_n c_n^T (full) or its diagonal, of rows already centred.

    `piece_moments` centres a piece on its own mean; `merge_moments` then adds
    the scatters of pieces with Chan's correction.

    Returns
    -------
    scatter : ndarray of shape (n_features, n_features) if full else (n_features,)
    """
    # Unit weights (no sample_weight) skip the product, and c^T c then runs as
    # one symmetric rank-k update: the scatter of 1e6 x 16 (62 pieces) took
    # 0.020 s instead of 0.039 s in a fit.
    weighted = centred if np.all(weights == 1.0) else centred * weights[:, None]
    if full:
        return weighted.T @ centred
    return np.sum(weighted * centred, axis=0)


def covariance_from_scatter(scatter, total_weight, structure, observed_weight=None):
    """The weighted sample covariance from a scatter, in the structure's shape.

    With missing entries (`observed_weight` given), entry (i, j) is divided by
    sqrt(d_i d_j), d_j the denominator of feature j's observed weight: the
    diagonal is each feature's variance over its observed entries, and the
    matrix stays positive semi-definite (a diagonal rescaling of a scatter),
    which a pairwise-complete covariance need not be.

    Returns
    -------
    covariance : ndarray of shape `structure.prior_scale_shape(n_features)`
    """
    if observed_weight is None:
        denominator = total_weight - 1.0 if total_weight > 1.0 else total_weight
    else:
        denominator = np.where(
            observed_weight > 1.0, observed_weight - 1.0, observed_weight
        )
        if scatter.ndim == 2:
            root = np.sqrt(denominator)
            denominator = np.outer(root, root)
    covariance = scatter / denominator
    if structure.scale_inverse_rank == 0:
        return covariance.mean()
    return covariance
