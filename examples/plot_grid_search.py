"""
Choosing the number of components with GridSearchCV inside a Pipeline
=====================================================================

`score` is the mean log posterior predictive density of held-out data, so
cross-validation over `n_components` picks the model that predicts new data best.
The true evidence lower bound, `lower_bound_`, compares models too: unlike
scikit-learn's, it keeps every constant.
"""

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbayesmix import VariationalGaussianMixture

rng = np.random.RandomState(0)
centres = np.array([[2.0, 0.0], [-2.0, -4.0], [-2.0, 4.0]])
X = np.vstack([rng.randn(1024, 2) + c for c in centres])
# KFold does not shuffle: unshuffled, each test fold would be a blob never seen.
X = X[rng.permutation(len(X))]

pipeline = make_pipeline(
    StandardScaler(),
    VariationalGaussianMixture(
        weight_concentration_prior_type="dirichlet_distribution",
        max_iter=500,
        random_state=0,
    ),
)
search = GridSearchCV(
    pipeline,
    {"variationalgaussianmixture__n_components": list(range(1, 7))},
    cv=3,
    n_jobs=2,
).fit(X)

print("n_components  held-out mean log density  evidence lower bound (full fit)")
for k, score in zip(
    search.cv_results_["param_variationalgaussianmixture__n_components"],
    search.cv_results_["mean_test_score"],
):
    bound = (
        make_pipeline(
            StandardScaler(),
            VariationalGaussianMixture(
                n_components=k,
                weight_concentration_prior_type="dirichlet_distribution",
                max_iter=500,
                random_state=0,
            ),
        )
        .fit(X)[-1]
        .lower_bound_
    )
    print(f"{k:>12}  {score:>24.4f}  {bound:>31.1f}")
print("best:", search.best_params_)
