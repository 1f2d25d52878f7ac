"""
A Dirichlet-process mixture switches off the components it does not need
==========================================================================

Ask for ten components on data with three clusters. Under the truncated
stick-breaking (Dirichlet process) prior, the surplus components end up with
weights near zero, so the effective number of components is learned.
"""

import numpy as np

from skbayesmix import VariationalGaussianMixture

rng = np.random.RandomState(0)
centres = np.array([[2.0, 0.0], [-2.0, -4.0], [-2.0, 4.0]])
X = np.vstack([rng.randn(1024, 2) + c for c in centres])

model = VariationalGaussianMixture(
    n_components=10,
    covariance_type="full",
    weight_concentration_prior_type="dirichlet_process",
    weight_concentration_prior=1e-2,
    max_iter=1000,
    random_state=0,
).fit(X)

np.set_printoptions(precision=3, suppress=True)
print(f"converged: {model.converged_} after {model.n_iter_} iterations")
print("weights:", np.sort(model.weights_)[::-1])
active = model.weights_ > 0.01
print(f"active components: {active.sum()} of {model.n_components}")
print("their means:\n", model.means_[active][np.argsort(model.means_[active][:, 1])])
