"""
Where a density contour can be trusted: the 90% band of the density
===================================================================

200 points from a known three-component 2-D mixture; a Bayesian mixture with
K = 3 full-covariance components. ``score_samples`` gives one density, the
posterior predictive. ``score_samples_interval`` gives a pointwise 90% band:
quantiles of p(x | theta) over draws theta of the weights, means and
precisions from the variational posterior.

Left: for two density levels, the predictive contour (solid), the true
contour (dashed), and the shaded ring where the band straddles the level, so
where the contour could lie. Right: the same along the line y = 2, on a log
scale: the predictive, its band, and the true density.

Mean-field variational posteriors are overconfident, so the band covers the
true density less often than 90%; the script prints the measured coverage.
"""

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from skbayesmix import VariationalGaussianMixture

# %%
# The known mixture: its weights, means and covariances, a sampler and its
# log density.
weights = np.array([0.5, 0.3, 0.2])
means = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 2.0]])
covariances = np.array(
    [[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 1.5]], [[1.0, -0.6], [-0.6, 0.8]]]
)


def sample(rng, n_samples):
    counts = rng.multinomial(n_samples, weights)
    return np.vstack(
        [
            rng.multivariate_normal(m, c, size=n)
            for m, c, n in zip(means, covariances, counts)
        ]
    )


def true_log_density(X):
    return logsumexp(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(weights, means, covariances)
        ],
        axis=0,
    )


# %%
# Fit 200 points, then count how often the 90% band of the density contains
# the true log density, at 2000 fresh points.
rng = np.random.RandomState(0)
X = sample(rng, 200)
model = VariationalGaussianMixture(
    n_components=3, covariance_type="full", max_iter=500, random_state=0
).fit(X)

test_points = sample(rng, 2000)
lower, upper = model.score_samples_interval(test_points, level=0.9, random_state=0)
truth = true_log_density(test_points)
coverage = np.mean((lower <= truth) & (truth <= upper))
print(f"coverage of the true density by the 90% band: {coverage:.2f}")

# %%
# The predictive density and its band on a grid, and the figure.
bounds = (-6.5, 6.5, -4.0, 7.5)
xx, yy = np.meshgrid(
    np.linspace(bounds[0], bounds[1], 250), np.linspace(bounds[2], bounds[3], 250)
)
grid = np.c_[xx.ravel(), yy.ravel()]
log_density = model.score_samples(grid).reshape(xx.shape)
lower, upper = (
    band.reshape(xx.shape)
    for band in model.score_samples_interval(grid, level=0.9, random_state=0)
)
log_truth = true_log_density(grid).reshape(xx.shape)

fig, (ax_map, ax_slice) = plt.subplots(
    1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1.05, 1]}
)
ax_map.scatter(X[:, 0], X[:, 1], s=6, color="0.35", zorder=3)
legend = [Line2D([], [], marker="o", ls="", color="0.35", ms=3, label="data")]
for level, color in [(0.003, "tab:blue"), (0.04, "tab:orange")]:
    # Positive where lower < log(level) < upper: the contour can be anywhere
    # there. A smooth field, so that contourf interpolates its edges.
    straddle = np.minimum(upper - np.log(level), np.log(level) - lower)
    ax_map.contourf(xx, yy, straddle, levels=[0.0, np.inf], colors=[color], alpha=0.3)
    # Log levels are negative, which matplotlib would dash by default.
    ax_map.contour(
        xx, yy, log_density, levels=[np.log(level)], colors=[color], linestyles="-"
    )
    ax_map.contour(
        xx, yy, log_truth, levels=[np.log(level)], colors=["k"], linestyles="--"
    )
    legend += [
        Patch(color=color, alpha=0.4, label=f"90% band straddles p = {level}"),
        Line2D([], [], color=color, label=f"predictive contour p = {level}"),
    ]
legend.append(Line2D([], [], color="k", ls="--", label="true contours"))
ax_map.axhline(2.0, color="0.5", lw=0.8, ls=":")
ax_map.set_xlim(bounds[0], bounds[1])
ax_map.set_ylim(bounds[2], bounds[3])
ax_map.set_aspect("equal")
ax_map.legend(
    handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, fontsize=9
)
ax_map.set_title(f"n = {len(X)}: where each density contour can lie")
ax_map.set_xlabel("x1")
ax_map.set_ylabel("x2")

line = np.c_[np.linspace(bounds[0], bounds[1], 400), np.full(400, 2.0)]
line_lower, line_upper = model.score_samples_interval(line, level=0.9, random_state=0)
ax_slice.fill_between(
    line[:, 0],
    np.exp(line_lower),
    np.exp(line_upper),
    color="tab:blue",
    alpha=0.3,
    label="90% band of p(x | theta)",
)
ax_slice.plot(
    line[:, 0], np.exp(model.score_samples(line)), color="tab:blue", label="predictive"
)
ax_slice.plot(line[:, 0], np.exp(true_log_density(line)), "k--", label="true density")
ax_slice.set_yscale("log")
ax_slice.set_ylim(1e-5, 0.2)
ax_slice.set_xlim(bounds[0], bounds[1])
ax_slice.set_xlabel("x1, along x2 = 2 (dotted line on the left)")
ax_slice.set_ylabel("density")
ax_slice.legend(loc="lower center", fontsize=9)
ax_slice.set_title("along x2 = 2, log scale")
fig.suptitle(
    "90% pointwise band of the density (score_samples_interval); it covers the "
    f"true density at {coverage:.0%} of 2000 test points"
)
fig.tight_layout()

out = Path(
    sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("density_band.png")
)
fig.savefig(out, dpi=100, bbox_inches="tight")
print(f"density band plot written to {out}")
