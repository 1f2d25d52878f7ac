"""The VariationalGaussianMixture estimator: parameters, validation, fit loop."""

import copy
import functools
import sys
import warnings
from numbers import Integral, Real
from time import time

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from skbayesmix._gaussian import (
    _compute_precision_cholesky,
    _compute_precisions,
    _estimate_log_prob_resp,
    _estimate_log_student_t_prob,
    _sample_student_t_mixture,
)
from skbayesmix._standardisation import Standardisation, data_moments, row_pieces
from skbayesmix._state import COVARIANCE_STRUCTURES, Posterior, Prior

# The private attributes that let partial_fit resume an online fit. All are
# NumPy or NamedTuples of NumPy, so the model pickles without TensorFlow.
_ONLINE_STATE = ("_online_standardisation", "_online_prior", "_online_statistics")

# Online fits initialise (k-means) on a uniform subsample of this many rows: enough
# for k-means to place centres as on all rows, at a fraction of a second.
_ONLINE_INIT_ROWS = 2**15

# On a subsample or one chunk, k-means restarts are cheap, and the basin that the
# fit ends in follows the k-means optimum: on 2e6 x 16 anisotropic blobs (K=16
# diag, seeds 0-3) one run gave held-out scores from -25.19 to -25.01, the best
# of 5 from -25.01 to -24.98 (our batch fit from one run on all rows: -25.00).
_ONLINE_KMEANS_N_INIT = 5

# Prediction works through X in chunks of this many (sample, component) pairs.
_PREDICT_CHUNK_ELEMENTS = 2**16


def _is_dask_array(X):
    """Whether X is a dask array, found without importing dask.

    If dask.array was never imported, X cannot be one of its arrays.
    """
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(X, dask_array.Array)


def _check_shape(param, param_shape, name):
    """Raise sklearn's error when a prior array has the wrong shape."""
    if param.shape != param_shape:
        raise ValueError(
            "The parameter '%s' should have the shape of %s, but got %s"
            % (name, param_shape, param.shape)
        )


def _check_precision_matrix(matrix, covariance_type):
    """Raise sklearn's error unless `matrix` is symmetric positive definite."""
    if not (np.allclose(matrix, matrix.T) and np.all(np.linalg.eigvalsh(matrix) > 0.0)):
        raise ValueError(
            "'%s precision' should be symmetric, positive-definite" % covariance_type
        )


def _check_precision_positivity(vector, covariance_type):
    """Raise sklearn's error unless every entry of `vector` is positive."""
    if np.any(np.less_equal(vector, 0.0)):
        raise ValueError("'%s precision' should be positive" % covariance_type)


def _dirichlet_process_weights(concentration_a, concentration_b):
    """E[pi_k] of the stick-breaking posterior, renormalised over the K sticks.

    Returns
    -------
    weights : ndarray of shape (n_components,)
    """
    stick_total = concentration_a + concentration_b
    rest = concentration_b / stick_total
    weights = concentration_a / stick_total
    weights[1:] *= np.cumprod(rest[:-1])
    return weights / np.sum(weights)


class VariationalGaussianMixture(DensityMixin, BaseEstimator):
    """Variational Bayesian Gaussian mixture, fitted with TensorFlow Probability.

    A drop-in replacement for :class:`sklearn.mixture.BayesianGaussianMixture`:
    the same parameters, fitted attributes and errors. The variational posterior
    is fitted by closed-form coordinate ascent (CAVI) in compiled TensorFlow code;
    prediction uses only NumPy.

    Where it differs from scikit-learn, on purpose:

    - ``lower_bound_`` and ``lower_bounds_`` are the true evidence lower bound,
      with every constant, so they bound ``log p(X)`` and compare across
      ``n_components``. scikit-learn drops constants.
    - ``score_samples`` is the log posterior predictive density, a mixture of
      Student-t distributions whose exp integrates to 1. ``predict_proba`` and
      ``predict`` use the same predictive, so ``predict`` is the argmax of
      ``predict_proba``, and ``sample`` draws from that same density.
    - ``score_samples_interval`` gives a pointwise credible band of that
      density, from draws of the parameters under the variational posterior.
    - The 'diag' and 'spherical' precisions have Gamma posteriors, and 'tied' has
      one Wishart shared by all components, so every update is exact coordinate
      ascent and the ELBO does not decrease (up to round-off). scikit-learn
      approximates these.
    - float32 input is fitted and predicted in float32.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components. With the Dirichlet process prior this is
        an upper bound: surplus components get weights near zero.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        The structure of the precision matrices:

        - 'full': each component has its own Wishart-distributed precision;
        - 'tied': all components share one Wishart-distributed precision;
        - 'diag': each component has independent Gamma precisions per feature;
        - 'spherical': each component has one Gamma precision for all features.

    tol : float, default=1e-3
        Convergence threshold. Iterations stop when the lower bound changes by
        less than `tol`. With ``learning_method='online'`` the passes stop when
        the bound of a pass (see `lower_bound_`) changes by less than `tol`
        per unit of sample weight, that is by less than ``tol * n_samples``
        without weights: a per-pass estimate is noisy on the scale of the
        total, not of one sample.

    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of covariance, as in
        scikit-learn: every sample adds ``reg_covar * I`` to the scatter of the
        components it belongs to. It is also added once to the prior scale
        ``covariance_prior_`` so that every posterior scale stays positive
        definite, even for components that receive no data.

    max_iter : int, default=100
        The number of coordinate-ascent iterations to perform; with
        ``learning_method='online'``, the number of passes over X.

    n_init : int, default=1
        The number of initializations to perform. The result with the highest
        lower bound is kept.

    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        The method used to initialize the responsibilities:

        - 'kmeans': responsibilities are initialized using kmeans;
        - 'k-means++': use the k-means++ method to initialize;
        - 'random': responsibilities are initialized randomly;
        - 'random_from_data': initial means are randomly selected data points.

    weight_concentration_prior_type : {'dirichlet_process', \
            'dirichlet_distribution'}, default='dirichlet_process'
        The prior on the weights: a (truncated) stick-breaking Dirichlet process
        or a Dirichlet distribution.

    weight_concentration_prior : float or None, default=None
        The Dirichlet concentration of each component on the weight distribution,
        gamma in the literature. If None, it is set to ``1. / n_components``.

    mean_precision_prior : float or None, default=None
        The precision prior on the mean distribution (beta). If None, it is set
        to 1.

    mean_prior : array-like of shape (n_features,), default=None
        The prior on the mean distribution. If None, it is set to the mean of X.

    degrees_of_freedom_prior : float or None, default=None
        The prior of the number of degrees of freedom on the precision
        distributions. Must be greater than ``n_features - 1``. If None, it is
        set to ``n_features``.

    covariance_prior : float or array-like, default=None
        The prior on the covariance distribution (inverse scale of the Wishart or
        Gamma). If None, it is the empirical covariance of X. Its shape depends on
        `covariance_type`::

            (n_features, n_features) if 'full',
            (n_features, n_features) if 'tied',
            (n_features)             if 'diag',
            float                    if 'spherical'

    random_state : int, RandomState instance or None, default=None
        Controls the initialization and `sample`. Pass an int for reproducible
        results. The fit itself is deterministic given the initialization.

    warm_start : bool, default=False
        If True, each `fit` starts from the previous solution and `n_init` is
        ignored after the first call. An online `fit` starts from the E-step of
        its initialisation subsample under the previous posterior, and its
        step counter `n_batch_iter_` starts again from 0.

    verbose : int, default=0
        Enable verbose output. 1 prints each initialization; 2 also prints the
        change of the lower bound and the time since the previous line every
        `verbose_interval` iterations, as the iterations run.

    verbose_interval : int, default=10
        Number of iterations between two verbose lines.

    learning_method : {'batch', 'online'}, default='batch'
        How `fit` uses the data, as in
        :class:`~sklearn.decomposition.LatentDirichletAllocation`:

        - 'batch': coordinate ascent over all of X in each iteration;
        - 'online': stochastic variational inference (SVI) over shuffled
          minibatches of `batch_size` rows. X is never copied or standardised
          as a whole, so it may be a :class:`numpy.memmap` larger than memory:
          its rows are then read, validated and released block by block.

        `partial_fit` always takes online steps.

    learning_decay : float, default=0.7
        kappa in the step size rho_t = (learning_offset + t)^-kappa of the t-th
        minibatch step (t = 1 for the first). In (0.5, 1] the steps satisfy
        the Robbins-Monro conditions.

    learning_offset : float, default=10.0
        tau in rho_t; a larger tau makes the first steps smaller. With 0 the
        first step takes rho = 1, that is, it replaces the initialisation.

    batch_size : int, default=16384
        Rows per minibatch of the online steps. Measured on this project's
        2-core machine (16 components, 16 features, 'diag', float32), a step
        costs a fixed 2.7 ms (two backend calls, E-step and update) plus
        0.28 us per row, so 16384 rows keep the fixed cost near a third of a
        step, while 1e6 rows still give 62 steps per pass (see
        ``benchmarks/bench_online.py --batch-sizes``). `partial_fit` and
        online `fit` split their X into ceil(n_samples / batch_size)
        minibatches of nearly equal size.

    total_samples : float, default=1e6
        The total (weight of) samples of the stream, used by `partial_fit` only:
        the statistics of a minibatch of weight B are scaled by
        total_samples / B to stand for the whole stream. Online `fit` uses the
        total weight of X instead.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The expected weight of each component under the posterior.

    means_ : ndarray of shape (n_components, n_features)
        The posterior mean of each component's mean.

    covariances_ : ndarray
        The inverse of the expected precision of each component. Its shape is
        (n_components, n_features, n_features) for 'full', (n_features,
        n_features) for 'tied', (n_components, n_features) for 'diag' and
        (n_components,) for 'spherical'.

    precisions_ : ndarray
        The expected precision of each component, shaped as `covariances_`.

    precisions_cholesky_ : ndarray
        The Cholesky factor of `precisions_`, as in scikit-learn.

    converged_ : bool
        True when the best initialization reached `tol` before `max_iter`.
        Always False after `partial_fit`, which runs no convergence test.

    n_iter_ : int
        Number of iterations of the best initialization. With
        ``learning_method='online'`` an iteration of `fit` is a pass over X;
        `partial_fit` counts its calls that took at least one step.

    lower_bound_ : float
        The evidence lower bound of the best fit, a lower bound on log p(X)
        (in nats, summed over samples). With ``learning_method='online'`` it is
        the bound of the last pass: the ELBO at the final q(theta) with each
        row's q(z) from the minibatch step that saw it, still a true lower bound
        on log p(X), computed from the pass's statistics at no extra cost. After
        `partial_fit` it is the same ELBO for the last minibatch scaled to
        `total_samples` rows: an estimate of the bound for the stream.

    lower_bounds_ : list of float
        The lower bound after each iteration of the best fit. In a batch fit
        each iteration is an exact coordinate-ascent step, so the sequence is
        non-decreasing up to floating-point round-off: once it has converged, for
        example when run on with ``tol=0``, successive values can also fall, by
        round-off of relative size about 1e-8 or less. Online bounds are noisy
        and need not increase; `partial_fit` appends one value per call.

    n_batch_iter_ : int
        Number of minibatch (SVI) steps taken since the online state was
        initialised, t in rho_t. Set by online `fit` and by `partial_fit`.

    weight_concentration_prior_ : float
        The Dirichlet concentration prior actually used.

    weight_concentration_ : ndarray of shape (n_components,) or tuple
        The posterior Dirichlet concentrations, or for the Dirichlet process a
        tuple of the two Beta parameters of each stick.

    mean_precision_prior_ : float
        The mean precision prior actually used.

    mean_precision_ : ndarray of shape (n_components,)
        The posterior precision of each mean, relative to its component's.

    mean_prior_ : ndarray of shape (n_features,)
        The prior on the mean distribution actually used.

    degrees_of_freedom_prior_ : float
        The prior degrees of freedom actually used.

    degrees_of_freedom_ : ndarray of shape (n_components,) or float
        The posterior degrees of freedom of each component (one for 'tied').

    covariance_prior_ : float or ndarray
        The covariance prior actually used, before `reg_covar` is added.

    n_features_in_ : int
        Number of features seen during `fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during `fit`, when X has string feature names.

    See Also
    --------
    sklearn.mixture.BayesianGaussianMixture : The scikit-learn estimator this
        class replaces.

    References
    ----------
    .. [1] Bishop, C. M. (2006). Pattern Recognition and Machine Learning,
       chapter 10: Approximate Inference. Springer. The variational mixture of
       Gaussians and its coordinate-ascent updates.

    .. [2] Blei, D. M. and Jordan, M. I. (2006). Variational inference for
       Dirichlet process mixtures. Bayesian Analysis, 1(1), 121-143. The
       truncated stick-breaking prior.

    .. [3] Hoffman, M. D., Blei, D. M., Wang, C. and Paisley, J. (2013).
       Stochastic variational inference. Journal of Machine Learning Research,
       14, 1303-1347. Coordinate ascent as a natural-gradient step, and the
       online (minibatch) fit built on it.

    Examples
    --------
    Three clusters, found with their sizes and centres:

    >>> import numpy as np
    >>> from skbayesmix import VariationalGaussianMixture
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.randn(200, 2) + c for c in [(2, 0), (-2, -4), (-2, 4)]])
    >>> vgm = VariationalGaussianMixture(n_components=3, random_state=0).fit(X)
    >>> vgm.converged_
    True
    >>> order = np.argsort(vgm.means_[:, 1])
    >>> vgm.means_[order].round().astype(int)
    array([[-2, -4],
           [ 2,  0],
           [-2,  4]])
    >>> vgm.weights_[order].round(1)
    array([0.3, 0.3, 0.3])

    Each centre is assigned to its own component. `score_samples` is the log
    predictive density: about 1 / 3 of a unit Gaussian's peak, 1 / (2 pi), at a
    centre, and nil far away:

    >>> bool((vgm.predict(vgm.means_) == np.arange(3)).all())
    True
    >>> np.exp(vgm.score_samples([[2, 0], [20, 20]])).round(2)
    array([0.05, 0.  ])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [
            StrOptions({"kmeans", "random", "random_from_data", "k-means++"})
        ],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"spherical", "tied", "diag", "full"})],
        "weight_concentration_prior_type": [
            StrOptions({"dirichlet_process", "dirichlet_distribution"})
        ],
        "weight_concentration_prior": [
            None,
            Interval(Real, 0.0, None, closed="neither"),
        ],
        "mean_precision_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_prior": [None, "array-like"],
        "degrees_of_freedom_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "covariance_prior": [
            None,
            "array-like",
            Interval(Real, 0.0, None, closed="neither"),
        ],
        "learning_method": [StrOptions({"batch", "online"})],
        "learning_decay": [Interval(Real, 0.0, 1.0, closed="both")],
        "learning_offset": [Interval(Real, 0.0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "total_samples": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        learning_method="batch",
        learning_decay=0.7,
        learning_offset=10.0,
        batch_size=16384,
        total_samples=1e6,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.batch_size = batch_size
        self.total_samples = total_samples

    # ----------------------------------------------------------------------------
    # Priors
    # ----------------------------------------------------------------------------

    @property
    def _structure(self):
        return COVARIANCE_STRUCTURES[self.covariance_type]

    def _check_parameters(self, X, sample_weight, data_mean=None):
        """Set the `*_prior_` attributes from the parameters and the data.

        `covariance_prior_` is left None when it defaults from the data; see
        `_standardised_prior`. `data_mean`, the weighted mean of X, is given when
        it was reduced elsewhere (over blocks, or on a Dask cluster); X then only
        lends its shape and dtype.
        """
        n_features = X.shape[1]
        self.weight_concentration_prior_ = (
            1.0 / self.n_components
            if self.weight_concentration_prior is None
            else self.weight_concentration_prior
        )
        self.mean_precision_prior_ = (
            1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        )
        if self.mean_prior is None:
            if data_mean is None:
                data_mean = np.average(X, axis=0, weights=sample_weight)
            self.mean_prior_ = np.asarray(data_mean).astype(X.dtype)
        else:
            self.mean_prior_ = check_array(
                self.mean_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            _check_shape(self.mean_prior_, (n_features,), "means")

        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = n_features
        elif self.degrees_of_freedom_prior > n_features - 1.0:
            self.degrees_of_freedom_prior_ = self.degrees_of_freedom_prior
        else:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' "
                "should be greater than %d, but got %.3f."
                % (n_features - 1, self.degrees_of_freedom_prior)
            )

        structure = self._structure
        if self.covariance_prior is None:
            self.covariance_prior_ = None
        elif structure.scale_inverse_rank == 0:
            value = np.asarray(self.covariance_prior, dtype=np.float64)
            if value.size != 1:
                raise ValueError(
                    "The parameter 'spherical covariance_prior' should be a float, "
                    "but got an array of shape %s" % (value.shape,)
                )
            _check_precision_positivity(value, self.covariance_type)
            self.covariance_prior_ = float(value.reshape(()))
        else:
            self.covariance_prior_ = check_array(
                self.covariance_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            _check_shape(
                self.covariance_prior_,
                structure.prior_scale_shape(n_features),
                "%s covariance_prior" % self.covariance_type,
            )
            if structure.scale_inverse_rank == 2:
                _check_precision_matrix(self.covariance_prior_, self.covariance_type)
            else:
                _check_precision_positivity(
                    self.covariance_prior_, self.covariance_type
                )

    def _standardise(self, X, sample_weight):
        """The standardisation of validated X, X standardised, and the prior.

        One pass over pieces of X gives both the map and the empirical covariance
        that `covariance_prior_` defaults to.

        Returns
        -------
        standardisation : Standardisation
        Xs : ndarray of shape (n_samples, n_features)
        prior : Prior
        """
        structure = self._structure
        moments = data_moments(
            row_pieces(X, sample_weight), X.shape[1], structure.scale_inverse_rank
        )
        standardisation = Standardisation.from_data_moments(moments, self.reg_covar)
        Xs = standardisation.transform(X)
        prior = self._standardised_prior(
            Xs, standardisation, standardisation.covariance_to(moments, structure)
        )
        return standardisation, Xs, prior

    def _standardised_prior(self, Xs, standardisation, scaled_covariance):
        """The prior in the backend's standardised units, as a float64 Prior.

        Also sets the default `covariance_prior_` in data units from
        `scaled_covariance`, the weighted empirical covariance of the
        standardised data (weights count as repetitions), however the driver
        reduced it. Xs only lends its shape and dtype.
        """
        n_features = Xs.shape[1]
        structure = self._structure
        if self.covariance_prior_ is None:
            # Reduced in standardised units, where it cannot overflow.
            with np.errstate(over="ignore"):
                self.covariance_prior_ = standardisation.scale_matrix_from(
                    scaled_covariance
                ).astype(Xs.dtype)
        else:
            scaled_covariance = standardisation.scale_matrix_to(self.covariance_prior_)
        if not np.all(np.isfinite(self.covariance_prior_)):
            raise ValueError(
                "The covariance of X overflows the floating point range. "
                "Rescale X, for example with StandardScaler."
            )
        reg = standardisation.reg_covar_to(self.reg_covar)
        identity = np.eye(n_features) if structure.scale_inverse_rank == 2 else 1.0
        return Prior(
            np.float64(self.weight_concentration_prior_),
            np.float64(self.mean_precision_prior_),
            standardisation.mean_to(self.mean_prior_),
            np.float64(self.degrees_of_freedom_prior_),
            scaled_covariance + reg * identity,
        )

    # ----------------------------------------------------------------------------
    # Fitting
    # ----------------------------------------------------------------------------

    def _initial_resp(self, X, sample_weight, random_state, kmeans_n_init=1):
        """Initial responsibilities, by the same methods as scikit-learn's.

        Weights act as repetitions: k-means is weighted, and rows of weight zero
        are never picked as centres. `kmeans_n_init` k-means runs keep the one
        of least inertia ('kmeans' only).

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        # sklearn.cluster costs ~0.3 s to import; only fits need it.
        from sklearn.cluster import KMeans, kmeans_plusplus

        n_samples = X.shape[0]
        resp = np.zeros((n_samples, self.n_components), dtype=X.dtype)
        # k-means in float32 lands in worse optima on large data (-0.03 nats on
        # 1e6 x 16); the float64 copy is cheap next to the fit.
        X_init = np.asarray(X, dtype=np.float64)
        if self.init_params == "kmeans":
            labels = (
                KMeans(
                    n_clusters=self.n_components,
                    n_init=kmeans_n_init,
                    random_state=random_state,
                    # A copy made here is k-means' to centre in place: copying
                    # it again cost 0.1-0.4 s on 1e6 x 16.
                    copy_x=X_init is X,
                )
                .fit(X_init, sample_weight=sample_weight)
                .labels_
            )
            resp[np.arange(n_samples), labels] = 1
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n_samples, self.n_components))
            resp = (resp / resp.sum(axis=1)[:, np.newaxis]).astype(X.dtype)
        elif self.init_params == "random_from_data":
            indices = random_state.choice(
                n_samples,
                size=self.n_components,
                replace=False,
                p=None
                if sample_weight is None
                else sample_weight / sample_weight.sum(),
            )
            resp[indices, np.arange(self.n_components)] = 1
        else:
            _, indices = kmeans_plusplus(
                X_init,
                self.n_components,
                random_state=random_state,
                sample_weight=sample_weight,
            )
            resp[indices, np.arange(self.n_components)] = 1
        return resp

    def _fitted_structure_matches(self, X):
        """Whether a previous fit can warm-start a fit of this structure on X."""
        if not hasattr(self, "converged_"):
            return False
        n_components, n_features = self.n_components, X.shape[1]
        structure = self._structure
        is_dirichlet_process = (
            self.weight_concentration_prior_type == "dirichlet_process"
        )
        return (
            self.means_.shape == (n_components, n_features)
            and self.covariances_.shape
            == structure.covariances_shape(n_components, n_features)
            and (np.ndim(self.degrees_of_freedom_) == 0) == structure.shared
            and isinstance(self.weight_concentration_, tuple) == is_dirichlet_process
        )

    def _fitted_posterior(self):
        """The fitted attributes as a Posterior in data units."""
        if self.weight_concentration_prior_type == "dirichlet_process":
            concentration_a, concentration_b = self.weight_concentration_
        else:
            concentration_a = self.weight_concentration_
            concentration_b = np.zeros_like(concentration_a)
        nu = np.atleast_1d(np.asarray(self.degrees_of_freedom_, dtype=np.float64))
        return Posterior(
            concentration_a,
            concentration_b,
            self.mean_precision_,
            self.means_,
            nu,
            self._structure.scale_inverse(
                nu, np.asarray(self.covariances_, dtype=np.float64)
            ),
        )

    def _set_posterior(self, posterior, standardisation, dtype):
        """Store a standardised Posterior as scikit-learn's fitted attributes.

        Everything is derived in float64, then cast to X's dtype: a float32
        covariance can be too ill-conditioned to factorise, while the cast of its
        float64 precision Cholesky factor is accurate.
        """
        posterior = standardisation.posterior_from(posterior)
        structure = self._structure
        if self.weight_concentration_prior_type == "dirichlet_process":
            weight_concentration = (
                posterior.concentration_a,
                posterior.concentration_b,
            )
            weights = _dirichlet_process_weights(*weight_concentration)
        else:
            weight_concentration = posterior.concentration_a
            weights = weight_concentration / np.sum(weight_concentration)
        covariances64 = structure.covariances(
            posterior.degrees_of_freedom, posterior.scale_inverse
        )
        with np.errstate(over="ignore"):
            covariances = covariances64.astype(dtype)
        if not np.all(np.isfinite(covariances)):
            raise ValueError(
                "The covariance of X overflows the floating point range. "
                "Rescale X, for example with StandardScaler."
            )
        precisions_cholesky = _compute_precision_cholesky(
            covariances64, self.covariance_type
        )

        def cast(value):
            return value.astype(dtype) if isinstance(value, np.ndarray) else value

        nu = posterior.degrees_of_freedom
        self.weight_concentration_ = (
            tuple(cast(v) for v in weight_concentration)
            if isinstance(weight_concentration, tuple)
            else cast(weight_concentration)
        )
        self.weights_ = cast(weights)
        self.mean_precision_ = cast(posterior.mean_precision)
        self.means_ = cast(posterior.means)
        self.degrees_of_freedom_ = dtype(nu[0]) if structure.shared else cast(nu)
        self.covariances_ = covariances
        self.precisions_cholesky_ = cast(precisions_cholesky)
        self.precisions_ = _compute_precisions(
            self.precisions_cholesky_, self.covariance_type
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the variational posterior by coordinate ascent.

        The method fits the model `n_init` times and keeps the fit with the largest
        lower bound. Within each fit it iterates until the lower bound changes by
        less than `tol`, at most `max_iter` times; otherwise a
        :class:`~sklearn.exceptions.ConvergenceWarning` is raised. With
        `warm_start`, later calls continue from the previous solution.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points. Each row corresponds to a
            single data point.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples. A weight acts as a repetition
            count: integer weights give the same fit as repeated rows, and zero
            weights the same fit as dropped rows. They weigh the data-dependent
            priors (`mean_prior_`, `covariance_prior_`) and the initialisation
            too. None gives every sample weight 1.

        Returns
        -------
        self : object
            The fitted mixture.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            _dask.fit(self, X, sample_weight)
            return self
        self._fit(X, sample_weight)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model to X and predict the labels of X.

        Equivalent to ``fit(X, sample_weight=sample_weight).predict(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points. Each row corresponds to a
            single data point.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples; see `fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            _dask.fit(self, X, sample_weight)
            return _dask.predict(self, X, "predict")
        return self._predict_validated(self._fit(X, sample_weight))

    def _fit(self, X, sample_weight):
        """Validate X, fit, and store the fitted attributes; return validated X."""
        if self.learning_method == "online":
            return self._fit_online(X, sample_weight)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        weighted = sample_weight is not None
        if weighted:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        # Rows of weight zero count as absent, here as everywhere.
        n_samples = X.shape[0] if not weighted else int(np.sum(sample_weight > 0))
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
            )
        self._check_parameters(X, sample_weight)
        # Imported here so that `import skbayesmix` never loads TensorFlow.
        from skbayesmix._tfp_backend import fit_variational_posterior

        standardisation, Xs, prior = self._standardise(X, sample_weight)
        total_weight = X.shape[0] if not weighted else float(np.sum(sample_weight))
        # The ELBO of standardised data differs by the log-Jacobian of the map.
        log_jacobian = standardisation.log_jacobian(total_weight, X.shape[1])

        warm = self.warm_start and self._fitted_structure_matches(X)
        random_state = check_random_state(self.random_state)
        fit_segment = functools.partial(
            fit_variational_posterior,
            Xs,
            prior=prior,
            covariance_type=self.covariance_type,
            weight_concentration_prior_type=self.weight_concentration_prior_type,
            reg_covar=standardisation.reg_covar_to(self.reg_covar),
            tol=self.tol,
            sample_weight=sample_weight,
        )
        self._fit_initialisations(
            lambda: (self._initial_resp(Xs, sample_weight, random_state), None),
            warm,
            fit_segment,
            standardisation,
            log_jacobian,
            X.dtype.type,
            stacklevel=6,
        )
        # A batch fit replaces any online state: partial_fit must not resume it.
        for name in ("n_batch_iter_",) + _ONLINE_STATE:
            self.__dict__.pop(name, None)
        return X

    def _fit_initialisations(
        self,
        cold_start,
        warm,
        fit_segment,
        standardisation,
        log_jacobian,
        dtype,
        stacklevel,
    ):
        """Fit from `n_init` starts, keep the largest lower bound, store the fit.

        Shared by every full-batch driver (in memory, Dask): they differ only in
        `cold_start`, which returns (resp, posterior_init) to start from, and in
        `fit_segment`, which runs the loop on their data.

        Parameters
        ----------
        cold_start : callable
            Returns the initial responsibilities or the initial standardised
            Posterior (the other one None).
        warm : bool
            Continue from the fitted model instead (one start).
        fit_segment : callable
            fit_segment(resp, max_iter=, posterior_init=, lower_bound_init=)
            returns the backend's result dict.
        log_jacobian : float
            Added to the standardised lower bounds.
        stacklevel : int
            Points the ConvergenceWarning at the caller of `fit`.
        """
        best = None
        for init in range(1 if warm else self.n_init):
            if self.verbose:
                print("Initialization %d" % init)
            start = time()
            if warm:
                resp = None
                posterior_init = standardisation.posterior_to(self._fitted_posterior())
                lower_bound_init = self.lower_bound_ - log_jacobian
            else:
                resp, posterior_init = cold_start()
                lower_bound_init = -np.inf
            result = self._run_loop(fit_segment, resp, posterior_init, lower_bound_init)
            best = self._keep_best(
                best, result, np.asarray(result["lower_bounds"]) + log_jacobian, start
            )

        lower_bound, lower_bounds, result = best
        self._set_posterior(result["posterior"], standardisation, dtype)
        self._store_convergence(
            result["converged"],
            result["n_iter"],
            lower_bound,
            lower_bounds,
            stacklevel=stacklevel,
        )

    def _keep_best(self, best, result, lower_bounds, start):
        """Check one initialisation's fit, print its closing line, keep the best.

        Returns
        -------
        best : tuple
            (lower_bound, lower_bounds, result) of the best fit so far.
        """
        lower_bound = lower_bounds[-1] if len(lower_bounds) else -np.inf
        self._check_lower_bound(lower_bound)
        self._print_verbose_end(result["converged"], lower_bound, time() - start)
        if best is None or lower_bound > best[0]:
            return (lower_bound, lower_bounds, result)
        return best

    def _check_lower_bound(self, lower_bound):
        """Raise when the numbers of a fit broke down."""
        if self.max_iter > 0 and not np.isfinite(lower_bound):
            raise ValueError(
                "Fitting the mixture failed: the lower bound is not finite. "
                "Check the data for extreme values, or increase reg_covar."
            )

    def _store_convergence(
        self, converged, n_iter, lower_bound, lower_bounds, stacklevel=4
    ):
        """Set converged_, n_iter_ and the bounds; warn as scikit-learn does.

        `stacklevel` points the warning at the caller of `fit`.
        """
        self.converged_ = converged
        self.n_iter_ = n_iter
        self.lower_bound_ = float(lower_bound)
        self.lower_bounds_ = [float(v) for v in lower_bounds]
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. "
                "Try different init parameters, or increase max_iter, "
                "tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )

    def _run_loop(self, fit_segment, resp, posterior_init, lower_bound_init):
        """Run the compiled loop: in one call, or in verbose segments.

        With `verbose`, the loop runs `verbose_interval` iterations at a time, each
        segment a warm start from the last, so that scikit-learn's lines print as
        the iterations run. The segments give the same iterates as one call.
        """
        if not self.verbose:
            return fit_segment(
                resp,
                max_iter=self.max_iter,
                posterior_init=posterior_init,
                lower_bound_init=lower_bound_init,
            )
        lower_bounds, n_iter, converged = [], 0, False
        posterior, lower_bound = posterior_init, lower_bound_init
        last_line = time()
        while True:
            segment = fit_segment(
                resp,
                max_iter=min(self.verbose_interval, self.max_iter - n_iter),
                posterior_init=posterior,
                lower_bound_init=lower_bound,
            )
            posterior, converged = segment["posterior"], segment["converged"]
            lower_bounds.extend(segment["lower_bounds"])
            n_iter += segment["n_iter"]
            if n_iter and n_iter % self.verbose_interval == 0:
                change = lower_bounds[-1] - (
                    lower_bounds[-2] if len(lower_bounds) > 1 else lower_bound_init
                )
                now = time()
                if self.verbose == 1:
                    print("  Iteration %d" % n_iter)
                else:
                    print(
                        "  Iteration %d\t time lapse %.5fs\t ll change %.5f"
                        % (n_iter, now - last_line, change)
                    )
                last_line = now
            if lower_bounds:
                lower_bound = lower_bounds[-1]
            if converged or n_iter >= self.max_iter or segment["n_iter"] == 0:
                break
        return {
            "posterior": posterior,
            "lower_bounds": np.asarray(lower_bounds, dtype=np.float64),
            "n_iter": n_iter,
            "converged": converged,
        }

    def _print_verbose_end(self, converged, lower_bound, elapsed):
        """Print scikit-learn's closing line of one initialization."""
        if not self.verbose or self.max_iter == 0:
            return
        message = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {message}.")
        else:
            print(
                f"Initialization {message}. time lapse {elapsed:.5f}s\t lower bound"
                f" {lower_bound:.5f}."
            )

    # ----------------------------------------------------------------------------
    # Online fitting: the driver is skbayesmix._online
    # ----------------------------------------------------------------------------

    def _online_settings(self, standardisation):
        from skbayesmix._online import OnlineSettings

        return OnlineSettings(
            self.covariance_type,
            self.weight_concentration_prior_type,
            standardisation.reg_covar_to(self.reg_covar),
            int(self.batch_size),
            float(self.learning_offset),
            float(self.learning_decay),
        )

    def _validate_memmap(self, X):
        """Validate a memmap without reading it: its first rows set the checks.

        The values are validated block by block as they are read (see
        `skbayesmix._online.streamed_moments`).

        Returns
        -------
        dtype : numpy dtype
            The dtype that blocks of X are fitted in.
        """
        head = validate_data(
            self, X[:2], dtype=[np.float64, np.float32], ensure_min_samples=2
        )
        return head.dtype

    def _check_n_positive(self, n_samples):
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
            )

    def _online_init_rows(self, n_samples, sample_weight, init_size, random_state):
        """Sorted rows of positive weight for the initialisation, drawn uniformly.

        Returns
        -------
        rows : ndarray of shape (min(init_size, n_positive),)
        """
        from sklearn.utils.random import sample_without_replacement

        candidates = None if sample_weight is None else np.flatnonzero(sample_weight)
        n_candidates = n_samples if candidates is None else candidates.size
        size = min(init_size, n_candidates)
        rows = sample_without_replacement(n_candidates, size, random_state=random_state)
        rows = np.sort(rows if candidates is None else candidates[rows])
        return rows

    def _fit_online(self, X, sample_weight):
        """Fit by passes of SVI steps over shuffled minibatches; return X.

        X is never copied or standardised as a whole: the standardisation and the
        data-dependent priors come from one exact streaming pass over blocks of
        rows, the initialisation from `init_params` on a uniform subsample of
        ``max(32768, 20 * n_components)`` rows (with 'kmeans', the best of 5
        k-means runs), and each minibatch is standardised as it is used.
        """
        from skbayesmix._online import (
            OnlineState,
            fit_passes,
            read_rows,
            scaled_initial_statistics,
            streamed_moments,
        )
        from skbayesmix._tfp_backend import update

        on_disk = isinstance(X, np.memmap)
        if on_disk:
            dtype = self._validate_memmap(X)
        else:
            X = validate_data(
                self, X, dtype=[np.float64, np.float32], ensure_min_samples=2
            )
            dtype = X.dtype
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        n_samples, n_features = X.shape
        structure = self._structure
        moments = streamed_moments(
            X, sample_weight, structure.scale_inverse_rank, dtype, validate=on_disk
        )
        self._check_n_positive(moments.n_positive)
        total_weight = moments.total_weight
        standardisation = Standardisation.from_data_moments(moments, self.reg_covar)
        scaled_covariance = standardisation.covariance_to(moments, structure)
        no_rows = np.empty((0, n_features), dtype)
        self._check_parameters(no_rows, sample_weight, data_mean=moments.shift)
        prior = self._standardised_prior(no_rows, standardisation, scaled_covariance)
        settings = self._online_settings(standardisation)
        log_jacobian = standardisation.log_jacobian(total_weight, n_features)
        keywords = dict(
            covariance_type=self.covariance_type,
            weight_concentration_prior_type=self.weight_concentration_prior_type,
        )

        do_init = not (self.warm_start and self._fitted_structure_matches(X))
        n_init = self.n_init if do_init else 1
        random_state = check_random_state(self.random_state)
        init_size = max(_ONLINE_INIT_ROWS, 20 * self.n_components)
        best = None
        for init in range(n_init):
            if self.verbose:
                print("Initialization %d" % init)
            start = time()
            rows = self._online_init_rows(
                n_samples, sample_weight, init_size, random_state
            )
            Xs_init = standardisation.transform(read_rows(X, rows, dtype))
            weights_init = None if sample_weight is None else sample_weight[rows]
            if do_init:
                resp = self._initial_resp(
                    Xs_init, weights_init, random_state, _ONLINE_KMEANS_N_INIT
                )
                posterior = None
            else:
                resp = None
                posterior = standardisation.posterior_to(self._fitted_posterior())
            statistics = scaled_initial_statistics(
                Xs_init, weights_init, total_weight, settings, resp, posterior
            )
            state = OnlineState(
                statistics,
                update(prior, statistics, settings.reg_covar, **keywords),
                0,
            )
            result = fit_passes(
                X,
                sample_weight,
                standardisation,
                prior,
                state,
                settings,
                total_weight=total_weight,
                max_iter=self.max_iter,
                tol=self.tol,
                rng=random_state,
                dtype=dtype,
                on_pass=self._verbose_pass_printer(),
            )
            best = self._keep_best(
                best, result, np.asarray(result["lower_bounds"]) + log_jacobian, start
            )

        lower_bound, lower_bounds, result = best
        state = result["state"]
        self._set_posterior(state.posterior, standardisation, dtype.type)
        self._store_convergence(
            result["converged"],
            result["n_iter"],
            lower_bound,
            lower_bounds,
            stacklevel=5,
        )
        self.n_batch_iter_ = state.n_batch_iter
        self._online_standardisation = standardisation
        self._online_prior = prior
        self._online_statistics = state.statistics
        return X

    def _verbose_pass_printer(self):
        """scikit-learn's verbose lines, one per `verbose_interval` passes."""
        if not self.verbose:
            return None
        last = {"time": time(), "bound": -np.inf}

        def on_pass(n_pass, bound):
            if n_pass % self.verbose_interval == 0:
                now = time()
                if self.verbose == 1:
                    print("  Iteration %d" % n_pass)
                else:
                    change = bound - last["bound"]
                    print(
                        "  Iteration %d\t time lapse %.5fs\t ll change %.5f"
                        % (n_pass, now - last["time"], change)
                    )
                last["time"] = now
            last["bound"] = bound

        return on_pass

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Take online (SVI) steps on one chunk of a stream.

        X is split into ceil(n_samples / batch_size) minibatches of nearly equal
        size, taken in order, one step each; their statistics are scaled by
        total_samples / (their total weight). The first call initialises the
        online state: the standardisation and the data-dependent priors come from
        its X, and the responsibilities from `init_params` on it (with 'kmeans',
        the best of 5 k-means runs, as in online `fit`); it also fixes
        `n_features_in_`. On a model fitted by the batch `fit`, the first call
        starts from the fitted posterior instead (as `warm_start` would), with
        priors from its X. Later calls continue, so the chunks of a stream need
        never be in memory together, and the fitted attributes are valid after
        every call.

        A call that raises leaves the model as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of the stream. The first chunk needs at least
            `n_components` samples of positive weight.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples, as in `fit`.

        Returns
        -------
        self : object
            The partially fitted mixture.
        """
        # Work on a shallow copy and commit only on success: every step below
        # assigns new attributes rather than mutating arrays in place.
        work = copy.copy(self)
        work._partial_fit(X, sample_weight)
        self.__dict__.update(work.__dict__)
        return self

    def _resumes_online_state(self, X):
        """Whether partial_fit on X continues this model's online state."""
        if not self._fitted_structure_matches(X):
            return False
        statistics = getattr(self, "_online_statistics", None)
        return statistics is not None and statistics.second_moment.shape == (
            self._structure.second_moment_shape(self.n_components, X.shape[1])
        )

    def _partial_fit(self, X, sample_weight):
        from skbayesmix._online import (
            OnlineState,
            minibatch_slices,
            online_steps,
            scaled_initial_statistics,
        )
        from skbayesmix._tfp_backend import lower_bound, update

        fitted = hasattr(self, "converged_")
        X = validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            ensure_min_samples=1,
            reset=not fitted,
        )
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        keywords = dict(
            covariance_type=self.covariance_type,
            weight_concentration_prior_type=self.weight_concentration_prior_type,
        )
        total_weight = float(self.total_samples)
        if self._resumes_online_state(X):
            standardisation = self._online_standardisation
            prior = self._online_prior
            settings = self._online_settings(standardisation)
            statistics = self._online_statistics
            state = OnlineState(
                statistics,
                update(prior, statistics, settings.reg_covar, **keywords),
                self.n_batch_iter_,
            )
            n_iter, lower_bounds = self.n_iter_, list(self.lower_bounds_)
        else:
            n_samples = X.shape[0]
            if sample_weight is not None:
                n_samples = int(np.sum(sample_weight > 0))
            self._check_n_positive(n_samples)
            warm = self._fitted_structure_matches(X)
            self._check_parameters(X, sample_weight)
            standardisation, Xs, prior = self._standardise(X, sample_weight)
            settings = self._online_settings(standardisation)
            if warm:
                resp = None
                posterior = standardisation.posterior_to(self._fitted_posterior())
            else:
                resp = self._initial_resp(
                    Xs,
                    sample_weight,
                    check_random_state(self.random_state),
                    _ONLINE_KMEANS_N_INIT,
                )
                posterior = None
            statistics = scaled_initial_statistics(
                Xs, sample_weight, total_weight, settings, resp, posterior
            )
            state = OnlineState(
                statistics,
                update(prior, statistics, settings.reg_covar, **keywords),
                0,
            )
            n_iter, lower_bounds = 0, []

        minibatches = (
            (
                standardisation.transform(X[rows]),
                None if sample_weight is None else sample_weight[rows],
            )
            for rows in minibatch_slices(X.shape[0], settings.batch_size)
        )
        state, _, last_scaled = online_steps(
            state, minibatches, prior, total_weight, settings
        )
        if last_scaled is not None:
            bound = lower_bound(
                prior, state.posterior, last_scaled, settings.reg_covar, **keywords
            ) + standardisation.log_jacobian(total_weight, X.shape[1])
            n_iter, lower_bounds = n_iter + 1, lower_bounds + [float(bound)]
        self._set_posterior(state.posterior, standardisation, X.dtype.type)
        self.converged_ = False
        self.n_iter_ = n_iter
        self.lower_bounds_ = lower_bounds
        self.lower_bound_ = lower_bounds[-1] if lower_bounds else -np.inf
        self.n_batch_iter_ = state.n_batch_iter
        self._online_standardisation = standardisation
        self._online_prior = prior
        self._online_statistics = state.statistics

    # ----------------------------------------------------------------------------
    # Prediction: NumPy only
    # ----------------------------------------------------------------------------

    def _estimate_weighted_log_prob(self, X):
        """log E[pi_k] + log of component k's posterior predictive density.

        Returns
        -------
        weighted_log_prob : ndarray of shape (n_samples, n_components)
        """
        log_prob = _estimate_log_student_t_prob(
            X,
            self.means_,
            self.precisions_cholesky_,
            self.covariance_type,
            self.mean_precision_,
            self.degrees_of_freedom_,
        )
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights_).astype(log_prob.dtype)
        return log_prob + log_weights

    def _weighted_log_prob_chunks(self, X):
        """Yield (rows, weighted log prob of those rows) over chunks of X.

        Chunks keep every temporary at a few MB, so `score_samples` on a
        1000 x 1000 grid costs little more memory than its output.
        """
        n_rows = max(1, _PREDICT_CHUNK_ELEMENTS // self.n_components)
        for rows in gen_batches(X.shape[0], n_rows):
            yield rows, self._estimate_weighted_log_prob(X[rows])

    def _predict_validated(self, X):
        labels = np.empty(X.shape[0], dtype=np.intp)
        for rows, weighted_log_prob in self._weighted_log_prob_chunks(X):
            labels[rows] = np.argmax(weighted_log_prob, axis=1)
        return labels

    def _validate_predict_data(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def score_samples(self, X):
        """Log posterior predictive density of each sample.

        Unlike scikit-learn's plug-in Gaussian density, this is a normalised
        density: a mixture of Student-t distributions whose exp integrates to 1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            Log density of each sample in `X` under the posterior predictive.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.predict(self, X, "score_samples")
        X = self._validate_predict_data(X)
        log_prob = np.empty(X.shape[0], dtype=np.result_type(X, self.means_))
        for rows, weighted_log_prob in self._weighted_log_prob_chunks(X):
            log_prob[rows] = logsumexp(weighted_log_prob, axis=1)
        return log_prob

    def score_samples_interval(self, X, level=0.9, n_draws=200, random_state=None):
        """Pointwise credible band of the log density of each sample.

        `score_samples` is log E_q[p(x | theta)], one density. This method shows
        how sure the model is of it: it draws S parameter sets theta_s (weights,
        means, precisions) from the variational posterior q(theta), evaluates
        log p(x | theta_s), a Gaussian mixture, at every row of `X`, and returns
        the pointwise (1 - level) / 2 and (1 + level) / 2 quantiles over the S
        draws. For the Dirichlet process the K sticks are truncated and each
        draw's weights renormalised, as `weights_` are.

        The band is only as honest as q: mean-field variational posteriors are
        too narrow, so its frequentist coverage falls below `level` (see the
        README for measured values). Rows are processed in chunks, so memory
        stays bounded on large grids.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        level : float, default=0.9
            Credible level of the band, in (0, 1).

        n_draws : int, default=200
            Number of draws from q(theta). The Monte-Carlo error of the band's
            ends is about 5% of its width at 200 draws.

        random_state : int, RandomState instance or None, default=None
            Seeds the draws; pass an int for reproducible bands. The same
            draws serve every row, so bands of two levels with the same int
            are nested.

        Returns
        -------
        lower : ndarray of shape (n_samples,)
            Lower end of the band of log densities.

        upper : ndarray of shape (n_samples,)
            Upper end of the band of log densities.
        """
        from skbayesmix._density_band import (
            check_band_parameters,
            fitted_posterior,
            log_density_quantiles,
        )

        X = self._validate_predict_data(X)
        check_band_parameters(level, n_draws)
        return log_density_quantiles(
            X, fitted_posterior(self), level, n_draws, random_state
        )

    def score(self, X, y=None, sample_weight=None):
        """Mean log posterior predictive density of the samples in X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        y : Ignored
            Not used, present for API consistency by convention.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the mean, so that a weighted
            cross-validation scores with the weights it fits with.

        Returns
        -------
        log_likelihood : float
            The (weighted) mean of `score_samples(X)`.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.score(self, X, sample_weight)
        log_prob = self.score_samples(X)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, log_prob[:, None], dtype=np.float64
            )
        return float(np.average(log_prob, weights=sample_weight))

    def predict(self, X):
        """Predict the most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.predict(self, X, "predict")
        return self._predict_validated(self._validate_predict_data(X))

    def predict_proba(self, X):
        """Posterior probability of each component given each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            p(z = k | x, data) under the posterior predictive; rows sum to 1.
        """
        if _is_dask_array(X):
            from skbayesmix import _dask

            return _dask.predict(self, X, "predict_proba")
        X = self._validate_predict_data(X)
        resp = np.empty(
            (X.shape[0], self.n_components), dtype=np.result_type(X, self.means_)
        )
        for rows, weighted_log_prob in self._weighted_log_prob_chunks(X):
            resp[rows] = np.exp(_estimate_log_prob_resp(weighted_log_prob)[1])
        return resp

    def sample(self, n_samples=1):
        """Draw samples from the posterior predictive density.

        These come from the same density that `score_samples` evaluates: a
        mixture of Student-t distributions.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Randomly generated sample.

        y : ndarray of shape (n_samples,)
            Component labels.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                "Invalid value for 'n_samples': %d . The sampling requires at "
                "least one sample." % (n_samples)
            )
        rng = check_random_state(self.random_state)
        return _sample_student_t_mixture(
            rng,
            n_samples,
            self.weights_,
            self.means_,
            self.covariances_,
            self.covariance_type,
            self.mean_precision_,
            self.degrees_of_freedom_,
        )
