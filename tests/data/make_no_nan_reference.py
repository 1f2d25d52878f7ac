"""Write no_nan_reference.npz: fits of complete data, before missing values existed.

The fitting code for data without NaN must not change when missing values are
supported; tests/test_missing_fit.py compares today's fits with these. Rerun this
script only when a change is meant to move complete-data fits.

    python tests/data/make_no_nan_reference.py
"""

import pathlib

import numpy as np

from skbayesmix import VariationalGaussianMixture

ATTRIBUTES = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_cholesky_",
    "degrees_of_freedom_",
    "mean_precision_",
    "weight_concentration_",
    "lower_bound_",
)


def reference_fits():
    """(name, estimator, X) of each reference fit."""
    rng = np.random.RandomState(0)
    X = np.vstack(
        [rng.randn(80, 3) @ rng.randn(3, 3) + centre for centre in (0.0, 4.0, -4.0)]
    )
    for covariance_type in ("full", "tied", "diag", "spherical"):
        for weight_type in ("dirichlet_process", "dirichlet_distribution"):
            yield (
                f"{covariance_type}-{weight_type}",
                VariationalGaussianMixture(
                    n_components=3,
                    covariance_type=covariance_type,
                    weight_concentration_prior_type=weight_type,
                    max_iter=200,
                    random_state=0,
                ),
                X,
            )
    yield (
        "online-full",
        VariationalGaussianMixture(
            n_components=3, learning_method="online", batch_size=64, random_state=0
        ),
        X,
    )
    yield (
        "float32-full",
        VariationalGaussianMixture(n_components=3, random_state=0),
        X.astype(np.float32),
    )


if __name__ == "__main__":
    arrays = {}
    for name, estimator, X in reference_fits():
        estimator.fit(X)
        for attribute in ATTRIBUTES:
            arrays[f"{name}/{attribute}"] = np.asarray(getattr(estimator, attribute))
    path = pathlib.Path(__file__).with_name("no_nan_reference.npz")
    np.savez(path, **arrays)
    print(f"wrote {len(arrays)} arrays to {path}")
