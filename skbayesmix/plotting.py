"""Optional matplotlib helpers: a fitted density on a grid over two features."""

from numbers import Integral

import numpy as np

__all__ = ["density_grid", "plot_density"]

# Default margin around the data, as a fraction of their range on each axis.
_MARGIN = 0.1


def _n_features(estimator, X):
    """Number of features the estimator expects; a Pipeline reports its first step's."""
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        n_features = 2 if X is None else np.shape(X)[1]
    return int(n_features)


def _feature_names(estimator, X):
    """Names of the estimator's features, or X's column names, or None."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None and hasattr(X, "columns"):
        names = np.asarray(X.columns, dtype=object)
    return None if names is None else [str(name) for name in names]


def _feature_indices(features, n_features, names):
    """The column indices (i, j) to draw, from `features` given as indices or names.

    Raises the error that names the fix when a model of other than 2 features is
    drawn without `features`.
    """
    if features is None:
        if n_features != 2:
            raise ValueError(
                "plot_density draws two features, but the estimator was fitted on "
                f"{n_features}. Pass features=(i, j) to choose two of them (by "
                "index, or by name when it was fitted on a DataFrame); the others "
                "are then held at `held_at`, by default their mean in X."
            )
        return 0, 1
    if len(features) != 2:
        raise ValueError(f"features must name two features, got {features!r}.")
    indices = []
    for feature in features:
        if isinstance(feature, Integral):
            if not -n_features <= feature < n_features:
                raise ValueError(
                    f"Feature index {feature} is out of range for an estimator "
                    f"of {n_features} features."
                )
            indices.append(int(feature) % n_features)
        elif names is not None and str(feature) in names:
            indices.append(names.index(str(feature)))
        else:
            raise ValueError(
                f"Unknown feature {feature!r}; the estimator's features are "
                f"{names if names is not None else list(range(n_features))}."
            )
    if indices[0] == indices[1]:
        raise ValueError(f"features must be two different features, got {features!r}.")
    return tuple(indices)


def _bounds_from_data(X, features):
    """(x_min, x_max, y_min, y_max) of the data's two columns, with a margin."""
    bounds = []
    for column in features:
        values = X[:, column]
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        margin = _MARGIN * (high - low) if high > low else max(abs(low), 1.0)
        bounds += [low - margin, high + margin]
    return tuple(bounds)


def _grid_rows(estimator, xx, yy, features, held_at, n_features):
    """Rows of the grid, as the estimator was fitted: a DataFrame when it had names.

    Returns
    -------
    rows : ndarray or pandas.DataFrame of shape (xx.size, n_features)
    """
    rows = np.tile(np.asarray(held_at, dtype=np.float64), (xx.size, 1))
    rows[:, features[0]] = xx.ravel()
    rows[:, features[1]] = yy.ravel()
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return rows
    # An array here would make scikit-learn warn that X has no feature names.
    import pandas as pd

    return pd.DataFrame(rows, columns=names)


def _held_at(held_at, X, n_features):
    """The values of the features that are not drawn; the mean of X by default."""
    if held_at is not None:
        held_at = np.asarray(held_at, dtype=np.float64)
        if held_at.shape != (n_features,):
            raise ValueError(
                f"held_at must have shape ({n_features},), got {held_at.shape}."
            )
        return held_at
    if X is None:
        if n_features == 2:
            return np.zeros(2)
        raise ValueError(
            f"The estimator has {n_features} features: pass X or held_at, the "
            "values at which the features not drawn are held."
        )
    return np.nanmean(X, axis=0)


def _grid(bounds, n_points):
    x_min, x_max, y_min, y_max = bounds
    return np.meshgrid(
        np.linspace(x_min, x_max, n_points), np.linspace(y_min, y_max, n_points)
    )


def density_grid(estimator, bounds, n_points=100, *, features=None, held_at=None):
    """Evaluate exp(score_samples) of a fitted estimator on a regular 2-D grid.

    Parameters
    ----------
    estimator : fitted estimator with `score_samples`
        A fitted density, or a Pipeline ending in one. When it was fitted on a
        DataFrame, the grid is passed as a DataFrame with the same columns.

    bounds : tuple of float
        (x_min, x_max, y_min, y_max) of the grid.

    n_points : int, default=100
        Number of grid points along each axis.

    features : tuple of two int or str, default=None
        The two features on the axes, by index or by name. Required when the
        estimator has other than 2 features.

    held_at : array-like of shape (n_features,), default=None
        Values of the features that are not drawn (entries at `features` are
        ignored). Required when the estimator has more than 2 features.

    Returns
    -------
    xx, yy : ndarray of shape (n_points, n_points)
        Grid coordinates, as from `numpy.meshgrid`.

    density : ndarray of shape (n_points, n_points)
        The density at each grid point.

    Examples
    --------
    >>> import numpy as np
    >>> from skbayesmix import VariationalGaussianMixture
    >>> from skbayesmix.plotting import density_grid
    >>> X = np.random.RandomState(0).randn(200, 2)
    >>> vgm = VariationalGaussianMixture(n_components=2, random_state=0).fit(X)
    >>> xx, yy, density = density_grid(vgm, (-5, 5, -5, 5), n_points=101)
    >>> density.shape
    (101, 101)
    >>> round(float(density.sum() * 0.1**2), 2)  # the grid holds all the mass
    1.0
    """
    n_features = _n_features(estimator, None)
    features = _feature_indices(features, n_features, _feature_names(estimator, None))
    held_at = _held_at(held_at, None, n_features)
    xx, yy = _grid(bounds, n_points)
    rows = _grid_rows(estimator, xx, yy, features, held_at, n_features)
    return xx, yy, np.exp(estimator.score_samples(rows)).reshape(xx.shape)


def _log_spaced_levels(density, levels, decades):
    """`levels` contour levels, evenly spaced in log density over `decades` decades
    below the grid's maximum, so that the tails get contours too."""
    if not np.isscalar(levels):
        return np.sort(np.asarray(levels, dtype=np.float64))
    peak = float(np.max(density))
    if not peak > 0.0:
        raise ValueError("The density is zero everywhere on the grid.")
    return peak * np.logspace(-decades, 0.0, int(levels), endpoint=False)


def plot_density(
    estimator,
    X=None,
    *,
    bounds=None,
    n_points=100,
    features=None,
    held_at=None,
    levels=8,
    decades=4.0,
    band=None,
    colorbar=True,
    ax=None,
):
    """Draw density contours of a fitted estimator over two features and the data.

    Parameters
    ----------
    estimator : fitted estimator with `score_samples`
        A fitted density: a :class:`~skbayesmix.VariationalGaussianMixture`, a
        Pipeline ending in one, or any estimator with `score_samples`. On a
        Pipeline, `score_samples` is the last step's density of the transformed
        data, without the Jacobian of the transforms: the contours have the right
        shape but not the units of X. Wrap the model in
        `skbayesmix.TransformedDensity` for a density in X's units.

    X : array-like of shape (n_samples, n_features), default=None
        The data: scattered under the contours, and used for the default `bounds`
        and `held_at`.

    bounds : tuple of float, default=None
        (x_min, x_max, y_min, y_max) of the grid. By default the range of X on
        the two features drawn, widened by 10% on each side.

    n_points : int, default=100
        Number of grid points along each axis.

    features : tuple of two int or str, default=None
        The features on the x and y axes, by index or, for an estimator fitted on
        a DataFrame, by name. Required when the estimator has other than 2
        features.

    held_at : array-like of shape (n_features,), default=None
        With more than 2 features, the values at which the features not drawn are
        held: the plot shows the density along that slice, not the marginal of
        the two features. By default the mean of X.

    levels : int or array-like, default=8
        The number of contour levels, spaced evenly in log density from the
        grid's maximum down `decades` decades, or the levels themselves.

    decades : float, default=4.0
        How many decades below the maximum the lowest default level lies.

    band : float in (0, 1), default=None
        If given, shade the relative width of the central `band` credible band
        of the density, log(upper / lower), from
        ``estimator.score_samples_interval(X, level=band)``, where the density is
        above the lowest contour. Wide means uncertain.

    colorbar : bool, default=True
        Whether to add a colorbar for the contours (and one for the band).

    ax : matplotlib Axes, default=None
        Where to draw; a new figure's axes if None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from skbayesmix import VariationalGaussianMixture
    >>> from skbayesmix.plotting import plot_density
    >>> X = np.random.RandomState(0).randn(200, 3)
    >>> X[:100] += 4
    >>> vgm = VariationalGaussianMixture(n_components=2, random_state=0).fit(X)
    >>> ax = plot_density(vgm, X, features=(0, 2))
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('feature 0', 'feature 2')
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if X is not None:
        X_values = np.asarray(X, dtype=np.float64)
        if X_values.ndim != 2:
            raise ValueError(f"X must be 2-D, got an array of shape {X_values.shape}.")
    else:
        X_values = None
    if band is not None:
        if not 0.0 < band < 1.0:
            raise ValueError(f"band must be in (0, 1), got {band!r}.")
        if not hasattr(estimator, "score_samples_interval"):
            raise ValueError(
                f"band={band} needs an estimator with score_samples_interval, such "
                "as a fitted VariationalGaussianMixture or TransformedDensity; "
                f"{type(estimator).__name__} has none."
            )
    n_features = _n_features(estimator, X_values)
    names = _feature_names(estimator, X)
    features = _feature_indices(features, n_features, names)
    if X_values is not None and X_values.shape[1] != n_features:
        raise ValueError(
            f"X has {X_values.shape[1]} features, but the estimator expects "
            f"{n_features}."
        )
    if bounds is None:
        if X_values is None:
            raise ValueError("Pass X or bounds=(x_min, x_max, y_min, y_max).")
        bounds = _bounds_from_data(X_values, features)
    held_at = _held_at(held_at, X_values, n_features)

    xx, yy = _grid(bounds, n_points)
    rows = _grid_rows(estimator, xx, yy, features, held_at, n_features)
    density = np.exp(estimator.score_samples(rows)).reshape(xx.shape)
    levels = _log_spaced_levels(density, levels, decades)

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5.5))
    if band is not None:
        lower, upper = estimator.score_samples_interval(rows, level=band)
        width = (np.asarray(upper) - np.asarray(lower)).reshape(xx.shape)
        # Far from the data the band is wide but the density is nil; showing it
        # there would drown the region the contours describe.
        width = np.ma.masked_where(density < levels[0], width)
        shading = ax.pcolormesh(xx, yy, width, cmap="Oranges", shading="auto")
        if colorbar:
            ax.figure.colorbar(
                shading,
                ax=ax,
                label=f"{band:.0%} band width, log(upper / lower)",
            )
    if X_values is not None:
        ax.scatter(
            X_values[:, features[0]],
            X_values[:, features[1]],
            s=3,
            alpha=0.4,
            color="tab:gray",
            linewidths=0,
        )
    contours = ax.contour(
        xx, yy, density, levels=levels, norm=LogNorm(), cmap="viridis"
    )
    if colorbar:
        bar = ax.figure.colorbar(contours, ax=ax, label="density")
        # A log colorbar labels only whole decades, which these levels miss.
        bar.minorticks_off()
        bar.set_ticks(contours.levels, labels=[f"{v:.2g}" for v in contours.levels])
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    labels = names or [f"feature {i}" for i in range(n_features)]
    ax.set_xlabel(labels[features[0]])
    ax.set_ylabel(labels[features[1]])
    return ax
