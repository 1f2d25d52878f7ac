"""
A Dirichlet-process mixture switches off the components it does not need
==========================================================================

Ask for ten components on data with three clusters. Under the truncated
stick-breaking (Dirichlet process) prior, the surplus components end up with
weights near zero, so the effective number of components is learned.

The left panel follows the ten weights through the coordinate-ascent
iterations: k-means starts all ten with data, then the seven surplus
components lose theirs and their weights fall towards zero. The right panel
shows the fitted density over the data.
"""

import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skbayesmix import VariationalGaussianMixture
from skbayesmix.plotting import plot_density

rng = np.random.RandomState(0)
centres = np.array([[2.0, 0.0], [-2.0, -4.0], [-2.0, 4.0]])
X = np.vstack([rng.randn(1024, 2) + c for c in centres])

# %%
# One fit, run a few iterations at a time: with `warm_start=True` each call
# carries on from where the previous one stopped, so the weights can be recorded
# along the way (every iteration at first, then every 5th). The calls stop
# before convergence on purpose, hence the ConvergenceWarnings are silenced.
max_iter = 1000
model = VariationalGaussianMixture(
    n_components=10,
    covariance_type="full",
    weight_concentration_prior_type="dirichlet_process",
    weight_concentration_prior=1e-2,
    max_iter=1,
    warm_start=True,
    random_state=1,
)
iterations, weights = [], []
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    total = 0
    while total < max_iter:
        model.set_params(max_iter=1 if total < 20 else 5).fit(X)
        total += model.n_iter_
        iterations.append(total)
        weights.append(model.weights_)
        if model.converged_:
            break
weights = np.array(weights)  # [n_calls, n_components]

np.set_printoptions(precision=3, suppress=True)
print(f"converged: {model.converged_} after {iterations[-1]} iterations")
print("weights:", np.sort(model.weights_)[::-1])
active = model.weights_ > 0.01
print(f"active components: {active.sum()} of {model.n_components}")
print("their means:\n", model.means_[active][np.argsort(model.means_[active][:, 1])])

# %%
# The weights on a log scale: the three active ones settle near 1/3, the seven
# surplus ones fall by orders of magnitude, down to what the prior alone gives
# a stick without data.
fig, (left, right) = plt.subplots(
    1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.25, 1]}
)
for k in np.argsort(-model.weights_):
    surplus = not active[k]
    left.plot(
        iterations,
        weights[:, k],
        color="tab:gray" if surplus else None,
        alpha=0.7 if surplus else 1.0,
        linewidth=1 if surplus else 2,
        label=None
        if surplus
        else "centre (%d, %d): %.2f"
        % (*np.round(model.means_[k]).astype(int), model.weights_[k]),
    )
left.plot([], [], color="tab:gray", label=f"{(~active).sum()} surplus components")
left.set_yscale("log")
left.set_xscale("log")
left.set_xlabel("coordinate-ascent iteration")
left.set_ylabel("expected weight")
left.set_title("Surplus weights fall towards zero")
left.legend(loc="lower left")
left.grid(alpha=0.3, which="both")

plot_density(model, X, ax=right)
right.set_title(f"Fitted density: {active.sum()} active components of 10")
right.set_aspect("equal")
fig.tight_layout()

out = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else Path(__file__).with_name("dirichlet_process.png")
)
fig.savefig(out, dpi=100, bbox_inches="tight")
print(f"figure written to {out}")
