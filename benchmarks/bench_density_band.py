"""Density bands: Monte-Carlo error against n_draws, coverage, memory and time.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_density_band.py [mc] [coverage] [memory]

- ``mc``: for each n_draws, the standard deviation over 20 seeds of the band's
  ends, relative to the band's width, at 400 points drawn from the data's
  distribution. The default n_draws is the smallest with a median below 5%.
- ``coverage``: the frequentist coverage of the 0.9 band: over 20 data sets
  drawn from a known 2-D three-component mixture, the fraction of evaluation
  points (drawn from the same mixture) whose true log density lies in the band.
- ``memory``: peak extra memory (tracemalloc) and time of the default band on a
  1000 x 1000 grid, against score_samples on the same grid.
- ``integrals``: the integral of exp(score_samples) over the original space
  (midpoint rule, 600 x 600 points on the data's range widened by one range on
  each side), for a Pipeline and for TransformedDensity, through each
  supported transformer, on 300 skewed 2-D points.
"""

import sys
import time
import tracemalloc
import warnings

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from skbayesmix import TransformedDensity, VariationalGaussianMixture

TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_MEANS = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 2.0]])
TRUE_COVARIANCES = np.array(
    [[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 1.5]], [[1.0, -0.6], [-0.6, 0.8]]]
)


def sample_true_mixture(rng, n_samples):
    """Draw n_samples rows from the known mixture."""
    counts = rng.multinomial(n_samples, TRUE_WEIGHTS)
    return np.vstack(
        [
            rng.multivariate_normal(mean, cov, size=count)
            for mean, cov, count in zip(TRUE_MEANS, TRUE_COVARIANCES, counts)
        ]
    )


def true_log_density(X):
    """Log density of the known mixture at each row of X."""
    return logsumexp(
        [
            np.log(w) + multivariate_normal(mean, cov).logpdf(X)
            for w, mean, cov in zip(TRUE_WEIGHTS, TRUE_MEANS, TRUE_COVARIANCES)
        ],
        axis=0,
    )


def fit(X, seed, **params):
    params = {"n_components": 3, "random_state": seed, "max_iter": 500, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VariationalGaussianMixture(**params).fit(X)


def monte_carlo_error():
    rng = np.random.RandomState(0)
    model = fit(sample_true_mixture(rng, 500), 0)
    points = sample_true_mixture(rng, 400)
    print("## Monte-Carlo error of the 0.9 band's ends (n = 500, K = 3 full)\n")
    print("| n_draws | median sd / width | 90th pct sd / width | median width |")
    print("|---|---|---|---|")
    for n_draws in [25, 50, 100, 200, 400, 800]:
        bands = np.array(
            [
                model.score_samples_interval(points, n_draws=n_draws, random_state=s)
                for s in range(20)
            ]
        )  # [seeds, 2, n_points]
        width = np.mean(bands[:, 1] - bands[:, 0], axis=0)  # [n_points]
        relative_sd = np.std(bands, axis=0, ddof=1) / width  # [2, n_points]
        print(
            f"| {n_draws} | {np.median(relative_sd):.3f} | "
            f"{np.percentile(relative_sd, 90):.3f} | {np.median(width):.3f} |"
        )


def coverage():
    print("\n## Coverage of the 0.9 band over 20 data sets of the known mixture\n")
    print("| model | n | mean coverage | min | max | median width |")
    print("|---|---|---|---|---|---|")
    settings = [
        (
            "K=3 full, Dirichlet",
            {"weight_concentration_prior_type": "dirichlet_distribution"},
        ),
        ("K=3 full, DP", {}),
        ("K=6 full, DP", {"n_components": 6}),
        ("K=3 diag, DP", {"covariance_type": "diag"}),
    ]
    for name, params in settings:
        for n_samples in [100, 1000, 10000]:
            coverages, widths = [], []
            for seed in range(20):
                rng = np.random.RandomState(seed)
                model = fit(sample_true_mixture(rng, n_samples), seed, **params)
                points = sample_true_mixture(rng, 500)
                lower, upper = model.score_samples_interval(
                    points, level=0.9, random_state=seed
                )
                truth = true_log_density(points)
                coverages.append(np.mean((lower <= truth) & (truth <= upper)))
                widths.append(np.median(upper - lower))
            print(
                f"| {name} | {n_samples} | {np.mean(coverages):.3f} | "
                f"{np.min(coverages):.3f} | {np.max(coverages):.3f} | "
                f"{np.median(widths):.3f} |"
            )


def memory():
    rng = np.random.RandomState(0)
    model = fit(sample_true_mixture(rng, 3000), 0, n_components=10)
    grid = np.linspace(-6.0, 6.0, 1000)
    xx, yy = np.meshgrid(grid, grid)
    points = np.c_[xx.ravel(), yy.ravel()]
    print("\n## 1000 x 1000 grid, K = 10 full, D = 2\n")
    print("| call | time s | peak extra memory MiB (tracemalloc) |")
    print("|---|---|---|")
    for name, call in [
        ("score_samples", lambda: model.score_samples(points)),
        (
            "score_samples_interval (default n_draws)",
            lambda: model.score_samples_interval(points, random_state=0),
        ),
    ]:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        tracemalloc.start()
        call()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"| {name} | {elapsed:.2f} | {peak / 2**20:.1f} |")
    print("\nThe outputs alone are 7.6 MiB (score_samples) and 15.3 MiB (two bands).")


def midpoint_integral(score_samples, X, lower_bound=None, n_points=600):
    low, high = X.min(axis=0), X.max(axis=0)
    low, high = low - (high - low), high + (high - low)
    if lower_bound is not None:
        low = np.maximum(low, lower_bound)
    step = (high - low) / n_points
    axes = [low[d] + (np.arange(n_points) + 0.5) * step[d] for d in range(2)]
    grid = np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, 2)
    return np.exp(score_samples(grid)).sum() * np.prod(step)


def integrals():
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        MaxAbsScaler,
        MinMaxScaler,
        PowerTransformer,
        RobustScaler,
        StandardScaler,
    )

    rng = np.random.RandomState(0)
    Z = rng.randn(300, 2) @ np.array([[1.0, 0.6], [0.0, 0.8]])
    skewed = np.exp(0.5 * Z) * [3.0, 0.5] + [1.0, -2.0]
    positive = rng.gamma(4.0, size=(300, 2)) * [1.0, 5.0]

    def log_abs_det_log(X):
        return -np.log(X).sum(axis=1)

    log = FunctionTransformer(np.log, np.exp)
    cases = [
        ("StandardScaler", StandardScaler(), skewed, None),
        ("MinMaxScaler", MinMaxScaler(), skewed, None),
        ("MaxAbsScaler", MaxAbsScaler(), skewed, None),
        ("RobustScaler", RobustScaler(), skewed, None),
        ("PCA", PCA(), skewed, None),
        ("PCA(whiten=True)", PCA(whiten=True), skewed, None),
        (
            "StandardScaler + PCA(whiten=True)",
            make_pipeline(StandardScaler(), PCA(whiten=True)),
            skewed,
            None,
        ),
        ("PowerTransformer (Yeo-Johnson)", PowerTransformer(), positive, None),
        (
            "PowerTransformer (Box-Cox)",
            PowerTransformer(method="box-cox"),
            positive,
            0.0,
        ),
        ("FunctionTransformer(np.log, np.exp) *", log, positive, 0.0),
        (
            "log + StandardScaler + PCA(whiten=True) *",
            make_pipeline(log, StandardScaler(), PCA(whiten=True)),
            positive,
            0.0,
        ),
    ]
    print("\n## Integral of the density over the original space\n")
    print("| transformer | Pipeline.score_samples | TransformedDensity |")
    print("|---|---|---|")
    for name, transformer, X, lower_bound in cases:
        log_abs_det = log_abs_det_log if name.endswith("*") else None
        pipeline = make_pipeline(
            transformer, VariationalGaussianMixture(n_components=3)
        )
        density = TransformedDensity(
            VariationalGaussianMixture(n_components=3),
            transformer,
            log_abs_det_jacobian=log_abs_det,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline.set_params(variationalgaussianmixture__random_state=0).fit(X)
            density.set_params(estimator__random_state=0).fit(X)
        integral_pipeline = midpoint_integral(pipeline.score_samples, X, lower_bound)
        integral_density = midpoint_integral(density.score_samples, X, lower_bound)
        print(f"| {name} | {integral_pipeline:.3f} | {integral_density:.3f} |")
    print("\n\\* with log_abs_det_jacobian=lambda X: -np.log(X).sum(axis=1)")


if __name__ == "__main__":
    sections = sys.argv[1:] or ["mc", "coverage", "memory", "integrals"]
    for section in sections:
        {
            "mc": monte_carlo_error,
            "coverage": coverage,
            "memory": memory,
            "integrals": integrals,
        }[section]()
