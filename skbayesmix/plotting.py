"""Optional matplotlib helpers: a fitted mixture's density on a grid."""

import numpy as np

__all__ = ["density_grid", "plot_density"]


def density_grid(estimator, bounds, n_points=100):
    """Evaluate exp(score_samples) of a fitted 2-D mixture on a regular grid.

    Parameters
    ----------
    estimator : fitted estimator with `score_samples`
        A fitted mixture of two features, or a Pipeline ending in one.

    bounds : tuple of float
        (x_min, x_max, y_min, y_max) of the grid.

    n_points : int, default=100
        Number of grid points along each axis.

    Returns
    -------
    xx, yy : ndarray of shape (n_points, n_points)
        Grid coordinates, as from `numpy.meshgrid`.

    density : ndarray of shape (n_points, n_points)
        The density at each grid point.
    """
    x_min, x_max, y_min, y_max = bounds
    xx, yy = np.meshgrid(
        np.linspace(x_min, x_max, n_points), np.linspace(y_min, y_max, n_points)
    )
    log_density = estimator.score_samples(np.c_[xx.ravel(), yy.ravel()])
    return xx, yy, np.exp(log_density).reshape(xx.shape)


def plot_density(estimator, X=None, bounds=(-6, 6, -6, 6), n_points=100, ax=None):
    """Draw density contours of a fitted 2-D mixture, over the data if given.

    Parameters
    ----------
    estimator : fitted estimator with `score_samples`
        A fitted mixture of two features.

    X : array-like of shape (n_samples, 2), default=None
        Points to scatter under the contours.

    bounds : tuple of float, default=(-6, 6, -6, 6)
        (x_min, x_max, y_min, y_max) of the grid.

    n_points : int, default=100
        Number of grid points along each axis.

    ax : matplotlib Axes, default=None
        Where to draw; a new figure's axes if None.

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    if X is not None:
        X = np.asarray(X)
        ax.scatter(X[:, 0], X[:, 1], s=2, alpha=0.3, color="tab:gray")
    xx, yy, density = density_grid(estimator, bounds, n_points)
    ax.contour(xx, yy, density, levels=10, cmap="viridis")
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_aspect("equal")
    return ax
