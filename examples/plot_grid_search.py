"""
Choosing the number of components with GridSearchCV inside a Pipeline
=====================================================================

`score` is the mean log posterior predictive density of held-out data, so
cross-validation over `n_components` picks the model that predicts new data best.
The evidence lower bound, `lower_bound_`, compares models too: unlike
scikit-learn's, it keeps every constant, so it bounds log p(X) whatever K is.

The figure shows both per K, side by side, with the K each one picks.
"""

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbayesmix import VariationalGaussianMixture

# %%
# Three unit-variance clusters, as in the tutorial.
rng = np.random.RandomState(0)
centres = np.array([[2.0, 0.0], [-2.0, -4.0], [-2.0, 4.0]])
X = np.vstack([rng.randn(1024, 2) + c for c in centres])
# KFold does not shuffle: unshuffled, each test fold would be a blob never seen.
X = X[rng.permutation(len(X))]


def make_model(n_components=1):
    # max_iter=500: at the default 100, some K stop before converging and warn.
    return make_pipeline(
        StandardScaler(),
        VariationalGaussianMixture(
            n_components=n_components,
            weight_concentration_prior_type="dirichlet_distribution",
            max_iter=500,
            random_state=0,
        ),
    )


# %%
# Held-out density: 3-fold cross-validation over K = 1..6. Threads rather than
# joblib's default worker processes: each process would import TensorFlow and
# trace the fit again (see "Parallelism" in the README).
ks = np.arange(1, 7)
search = GridSearchCV(
    make_model(),
    {"variationalgaussianmixture__n_components": list(ks)},
    cv=3,
    n_jobs=2,
)
with parallel_config(backend="threading"):
    search.fit(X)
held_out = search.cv_results_["mean_test_score"]
held_out_std = search.cv_results_["std_test_score"]
best_k = int(search.best_params_["variationalgaussianmixture__n_components"])

# %%
# Evidence lower bound of a fit on all the data, per sample so that both panels
# are in nats per sample. Both are densities of the standardised data, the
# Pipeline's input to the mixture.
elbo = np.array([make_model(k).fit(X)[-1].lower_bound_ / len(X) for k in ks])
elbo_k = int(ks[np.argmax(elbo)])

print("n_components  held-out mean log density  ELBO per sample (full fit)")
for k, score, bound in zip(ks, held_out, elbo):
    print(f"{k:>12}  {score:>24.4f}  {bound:>26.4f}")
print("best n_components by held-out density:", best_k)
print("largest ELBO at n_components =", elbo_k)

# %%
# Both criteria rise steeply to K = 3 and are flat after it.
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
left.errorbar(ks, held_out, yerr=held_out_std, marker="o", capsize=3)
left.set_ylabel("held-out mean log density\n(nats per sample, standardised data)")
left.set_title("3-fold cross-validation")
right.plot(ks, elbo, marker="o", color="tab:green")
right.set_ylabel("ELBO / n_samples\n(nats per sample, standardised data)")
right.set_title("evidence lower bound, fit on all data")
for ax, values, chosen, label in [
    (left, held_out, best_k, "GridSearchCV's choice"),
    (right, elbo, elbo_k, "largest ELBO"),
]:
    ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
    ax.plot(
        chosen,
        values[chosen - 1],
        marker="*",
        markersize=16,
        color="tab:red",
        linestyle="none",
        label=f"{label}: K = {chosen}",
    )
    # Past the true K both curves are flat: say by how little they fall.
    larger = values[chosen:]
    if larger.size:
        ax.annotate(
            f"K > {chosen}: at most {values[chosen - 1] - larger.min():.4f} lower",
            xy=(0.97, 0.3),
            xycoords="axes fraction",
            ha="right",
        )
    ax.set_xlabel("n_components (K)")
    ax.set_xticks(ks)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
fig.suptitle(
    f"Choosing K on 3 clusters: held-out density picks K = {best_k}, "
    f"the ELBO K = {elbo_k}"
)
fig.tight_layout()

out = Path(
    sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("grid_search.png")
)
fig.savefig(out, dpi=100, bbox_inches="tight")
print(f"figure written to {out}")
