"""GaussianMixtureImputer: missing entries filled from a mixture fitted with them."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from skbayesmix._conditional import conditional_draws, conditional_expectation
from skbayesmix._variational_mixture import VariationalGaussianMixture


class GaussianMixtureImputer(TransformerMixin, BaseEstimator):
    """Impute missing values from a Bayesian Gaussian mixture fitted with them.

    The mixture is fitted to X with its NaN entries integrated out exactly
    (missing at random), so no value is invented to fit it. Each missing
    entry is then filled with its conditional expectation given the row's
    observed features under the posterior predictive: a mixture of
    Student-t's, whose components are weighted by their responsibilities for
    the observed features. With ``sample_posterior=True`` the entries are
    drawn from that conditional instead, as
    :class:`~sklearn.impute.IterativeImputer` does, for multiple imputation.

    Unlike a regression on the other features, the imputation follows the
    cluster a row belongs to, and it needs no completed pass over the data.

    Parameters
    ----------
    estimator : VariationalGaussianMixture, default=None
        The mixture to fit, cloned at fit. None means
        ``VariationalGaussianMixture()``, a single full-covariance component,
        whose conditional expectation is the linear regression of each missing
        feature on the observed ones; set `n_components` for clustered data.

    sample_posterior : bool, default=False
        Whether to draw each row's missing entries from their conditional
        predictive rather than fill them with its expectation. The draws of a
        row are joint: one component, then its conditional Student-t.

    random_state : int, RandomState instance or None, default=None
        Seeds the draws of ``sample_posterior=True``, and the mixture's fit when
        the estimator's own `random_state` is None, so that one int makes the
        whole imputation reproducible.

    keep_empty_features : bool, default=False
        Whether to keep the features that have no observed value at fit, filled
        with 0 by `transform`. If False they are dropped, as scikit-learn's
        imputers drop them.

    Attributes
    ----------
    estimator_ : VariationalGaussianMixture
        The fitted mixture, on the features observed at fit.

    random_state_ : RandomState instance
        The generator of the draws, from `random_state`.

    n_features_in_ : int
        Number of features seen during `fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during `fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.impute.IterativeImputer : Multivariate imputation by chained
        regressions.
    sklearn.impute.KNNImputer : Imputation by the mean of nearest neighbours.
    VariationalGaussianMixture : The mixture, which also scores rows with NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from skbayesmix import GaussianMixtureImputer, VariationalGaussianMixture
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.randn(200, 2) + 4, rng.randn(200, 2) - 4])
    >>> X[[0, 300], 1] = np.nan
    >>> imputer = GaussianMixtureImputer(
    ...     VariationalGaussianMixture(n_components=2), random_state=0
    ... ).fit(X)
    >>> np.round(imputer.transform(X)[[0, 300], 1])
    array([ 4., -4.])
    """

    _parameter_constraints: dict = {
        "estimator": [VariationalGaussianMixture, None],
        "sample_posterior": ["boolean"],
        "random_state": ["random_state"],
        "keep_empty_features": ["boolean"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        sample_posterior=False,
        random_state=None,
        keep_empty_features=False,
    ):
        self.estimator = estimator
        self.sample_posterior = sample_posterior
        self.random_state = random_state
        self.keep_empty_features = keep_empty_features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validate_input(self, X, reset):
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
        )

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the mixture to X, with its missing entries integrated out.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data, with NaN at missing entries.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The fitted imputer.
        """
        X = self._validate_input(X, reset=True)
        self.random_state_ = check_random_state(self.random_state)
        self._empty_features = np.isnan(X).all(axis=0)
        if self._empty_features.all():
            raise ValueError(
                "Every feature of X is missing (NaN) in every row: there is "
                "nothing to fit the mixture to."
            )
        estimator = (
            VariationalGaussianMixture() if self.estimator is None else self.estimator
        )
        estimator = clone(estimator)
        if estimator.random_state is None and self.random_state is not None:
            seed = self.random_state
            if not isinstance(seed, numbers.Integral):
                seed = self.random_state_.randint(np.iinfo(np.int32).max)
            estimator.set_params(random_state=seed)
        self.estimator_ = estimator.fit(X[:, ~self._empty_features])
        return self

    def transform(self, X):
        """Fill the missing entries of X from the fitted mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data to complete, with NaN at missing entries.

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_features_out)
            X with every NaN replaced, in X's dtype (float64 or float32); the
            features empty at fit are dropped unless `keep_empty_features`.
        """
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        observed = X[:, ~self._empty_features]
        if self.sample_posterior:
            filled = conditional_draws(self.estimator_, observed, self.random_state_)
        else:
            filled = conditional_expectation(self.estimator_, observed)
        if not self.keep_empty_features:
            return filled.astype(X.dtype, copy=False)
        Xt = np.zeros_like(X)
        Xt[:, ~self._empty_features] = filled
        return Xt

    def get_feature_names_out(self, input_features=None):
        """Get output feature names for transformation.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input features. If None, `feature_names_in_` is used, or else
            ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The input features, without those empty at fit unless
            `keep_empty_features`.
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        if self.keep_empty_features:
            return names
        return names[~self._empty_features]
