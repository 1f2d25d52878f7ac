"""Held-out density and imputation error with entries missing completely at random.

The data are a 3-component, 5-feature Gaussian mixture with full, anisotropic
covariances (random rotations, axis scales in [0.3, 2]) whose clusters overlap
a little: for seeds 0 to 4, a classifier that knows the true mixture labels
92 to 100% of complete rows correctly, so a missing entry is best guessed
from the cluster its row is in. Each seed draws a new mixture, 2000 training
rows and 2000 held-out complete rows. A fraction (10%, 30%, 50%) of the
training entries, chosen uniformly without replacement, is set to NaN (MCAR).
The masks of one seed are nested: the 10% entries are among the 30% ones.
Rows with every entry missing are kept; every method handles them.

Two tables, one row per missing rate, each value the mean over seeds:

1. Held-out mean log density in nats, ``est.score(X_test)``, of
   (a) our fit of X with its NaN integrated out, (b) our fit of the complete
   rows only, (c) our fit after ``SimpleImputer(strategy="mean")``, and
   (d) scikit-learn's ``BayesianGaussianMixture`` after ``IterativeImputer``.
   Each library's `score` is what it reports: ours is the log of the
   posterior predictive (a mixture of Student-t's), sklearn's the plug-in
   Gaussian mixture density at its point estimate. Every mixture fit gets the
   same parameters (`mixture_parameters`). Below the table: the score of the
   true mixture and of our fit of the complete training data (ceilings), and
   a control, our mixture fitted to the output of IterativeImputer, which
   tells how much of the gap of (d) is the imputation's.
2. Imputation RMSE over the masked entries against their true values, of
   ``GaussianMixtureImputer`` (the conditional expectation under our fit (a)),
   ``SimpleImputer(strategy="mean")``, ``KNNImputer()`` and
   ``IterativeImputer()``.

"ours wins" compares ours with the best other method on the seed means;
"seeds won" counts the seeds where ours beats every other method, and the
margin (mean and min over seeds) is ours minus the best other of the same
seed, signed so that positive means ours is better.

Usage::

    PYTHONPATH=. nice -n 10 python benchmarks/bench_missing.py
    PYTHONPATH=. nice -n 10 python benchmarks/bench_missing.py --quick
    PYTHONPATH=. python benchmarks/bench_missing.py --seeds 10 --n-init 5 \
        --output benchmarks/results/missing.md
"""

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

# Run as a script, this directory is on sys.path; the helpers are shared so
# that both benchmarks draw their mixtures and describe the machine alike.
from bench_vs_sklearn import AnisotropicMixture, _package_revision, environment_lines
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.mixture import BayesianGaussianMixture

import skbayesmix
from skbayesmix import GaussianMixtureImputer, VariationalGaussianMixture

MISSING_RATES = (0.1, 0.3, 0.5)
N_COMPONENTS = 3
N_FEATURES = 5
N_TRAIN = 2000
N_TEST = 2000
# 1.5 keeps the clusters distinguishable but overlapping (see the docstring).
MEAN_SPREAD = 1.5
MAX_ITER = 500
# At 50% missing IterativeImputer needs 60 to 90 rounds to meet its tol.
ITERATIVE_IMPUTER_MAX_ITER = 100
SEEDS = {False: 5, True: 2}

OURS_NAN = "(a) ours, NaN integrated out"
OURS_COMPLETE_ROWS = "(b) ours, complete rows only"
OURS_MEAN_IMPUTED = "(c) ours after SimpleImputer(mean)"
SKLEARN_ITERATIVE = "(d) sklearn BGM after IterativeImputer"
DENSITY_METHODS = (OURS_NAN, OURS_COMPLETE_ROWS, OURS_MEAN_IMPUTED, SKLEARN_ITERATIVE)
# Not a competitor: it splits the gap of (d) into the imputation's share and
# the mixture library's.
OURS_ITERATIVE = "ours after IterativeImputer"

OUR_IMPUTER = "ours: GaussianMixtureImputer"
MEAN_IMPUTER = "SimpleImputer(mean)"
KNN_IMPUTER = "KNNImputer"
ITERATIVE_IMPUTER = "IterativeImputer"
IMPUTERS = (OUR_IMPUTER, MEAN_IMPUTER, KNN_IMPUTER, ITERATIVE_IMPUTER)


# --------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------


def mixture_data(seed):
    """A new mixture and its training and held-out rows, all from `seed`.

    Returns
    -------
    mixture : AnisotropicMixture
    X_train : ndarray of shape (N_TRAIN, N_FEATURES)
    X_test : ndarray of shape (N_TEST, N_FEATURES)
    """
    mixture = AnisotropicMixture(
        N_COMPONENTS, N_FEATURES, seed=seed, mean_spread=MEAN_SPREAD
    )
    rng = np.random.RandomState(seed)
    return mixture, mixture.sample(N_TRAIN, rng), mixture.sample(N_TEST, rng)


def true_mean_log_density(mixture, X):
    """Mean log density of X under the mixture that generated it, in nats."""
    log_weighted = np.column_stack(
        [
            np.log(weight)
            + multivariate_normal(mean, transform.T @ transform).logpdf(X)
            for weight, mean, transform in zip(
                mixture.weights, mixture.means, mixture.transforms
            )
        ]
    )  # [n_samples, n_components]
    return logsumexp(log_weighted, axis=1).mean()


def missing_order(shape, seed):
    """A random order of all entries; the first ones of it are missing.

    Taking a prefix gives an exact missing fraction, and nested masks across
    rates, so that the rates of one seed differ only by the extra holes.

    Returns
    -------
    order : ndarray of shape (prod(shape),)
        Flat indices into an array of `shape`.
    """
    return np.random.RandomState([seed, 1]).permutation(int(np.prod(shape)))


def mcar_mask(shape, rate, order):
    """The first round(rate * size) entries of `order`, as a boolean mask.

    Returns
    -------
    mask : ndarray of bool of shape `shape`
        True where the entry is missing.
    """
    mask = np.zeros(int(np.prod(shape)), dtype=bool)
    mask[order[: int(round(rate * mask.size))]] = True
    return mask.reshape(shape)


# --------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------


def mixture_parameters(n_init):
    """The constructor parameters shared by our mixture and sklearn's."""
    return dict(
        n_components=N_COMPONENTS,
        covariance_type="full",
        n_init=n_init,
        max_iter=MAX_ITER,
    )


def our_mixture(seed, n_init):
    """An unfitted VariationalGaussianMixture with the shared parameters."""
    return VariationalGaussianMixture(**mixture_parameters(n_init), random_state=seed)


def sklearn_mixture(seed, n_init):
    """An unfitted BayesianGaussianMixture with the shared parameters."""
    return BayesianGaussianMixture(**mixture_parameters(n_init), random_state=seed)


def imputers(seed, n_init):
    """The four imputers compared, unfitted, by name."""
    return {
        OUR_IMPUTER: GaussianMixtureImputer(estimator=our_mixture(seed, n_init)),
        MEAN_IMPUTER: SimpleImputer(strategy="mean"),
        KNN_IMPUTER: KNNImputer(),
        ITERATIVE_IMPUTER: IterativeImputer(
            random_state=seed, max_iter=ITERATIVE_IMPUTER_MAX_ITER
        ),
    }


# --------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------


def imputation_rmse(X_imputed, X_true, mask):
    """Root mean squared error over the masked entries only."""
    return np.sqrt(np.mean((X_imputed[mask] - X_true[mask]) ** 2))


def measure_case(X_train, X_test, mask, seed, n_init):
    """The held-out scores and imputation errors at one seed and missing rate.

    Parameters
    ----------
    X_train : ndarray of shape (N_TRAIN, N_FEATURES)
        The complete training rows; the truth for the RMSE.
    X_test : ndarray of shape (N_TEST, N_FEATURES)
    mask : ndarray of bool of shape (N_TRAIN, N_FEATURES)
        True at the entries to hide.
    seed : int
    n_init : int

    Returns
    -------
    case : dict
        ``scores`` (by DENSITY_METHODS name, and OURS_ITERATIVE), ``rmse``
        (by IMPUTERS name), ``n_complete_rows``, ``n_empty_rows``,
        ``unconverged`` (the names of the fits that stopped at their
        max_iter) and ``seconds``.
    """
    start = time.perf_counter()
    X_missing = np.where(mask, np.nan, X_train)
    fitted = imputers(seed, n_init)
    imputed = {
        name: imputer.fit_transform(X_missing) for name, imputer in fitted.items()
    }
    # The imputer's mixture is fit (a) itself: a clone of our_mixture(seed)
    # fitted to X_missing, as no feature is empty at these rates.
    ours_nan = fitted[OUR_IMPUTER].estimator_
    assert ours_nan.n_features_in_ == N_FEATURES
    complete_rows = ~mask.any(axis=1)
    mixtures = {
        OURS_NAN: ours_nan,
        OURS_COMPLETE_ROWS: our_mixture(seed, n_init).fit(X_train[complete_rows]),
        OURS_MEAN_IMPUTED: our_mixture(seed, n_init).fit(imputed[MEAN_IMPUTER]),
        SKLEARN_ITERATIVE: sklearn_mixture(seed, n_init).fit(
            imputed[ITERATIVE_IMPUTER]
        ),
        OURS_ITERATIVE: our_mixture(seed, n_init).fit(imputed[ITERATIVE_IMPUTER]),
    }
    unconverged = [name for name, m in mixtures.items() if not m.converged_]
    if fitted[ITERATIVE_IMPUTER].n_iter_ >= ITERATIVE_IMPUTER_MAX_ITER:
        unconverged.append(ITERATIVE_IMPUTER)
    return {
        "scores": {name: m.score(X_test) for name, m in mixtures.items()},
        "rmse": {
            name: imputation_rmse(X_imputed, X_train, mask)
            for name, X_imputed in imputed.items()
        },
        "n_complete_rows": int(complete_rows.sum()),
        "n_empty_rows": int(mask.all(axis=1).sum()),
        "unconverged": unconverged,
        "seconds": time.perf_counter() - start,
    }


def measure_seed(seed, n_init):
    """Every missing rate of one seed, and the references that need no mask.

    Returns
    -------
    cases : dict
        One `measure_case` result per rate in MISSING_RATES.
    references : dict
        ``true``: the held-out mean log density under the generating mixture;
        ``complete``: that of our fit of the complete training data.
    """
    mixture, X_train, X_test = mixture_data(seed)
    order = missing_order(X_train.shape, seed)
    cases = {}
    for rate in MISSING_RATES:
        cases[rate] = measure_case(
            X_train, X_test, mcar_mask(X_train.shape, rate, order), seed, n_init
        )
        print(
            "# seed %d, %d%% missing done in %.1f s"
            % (seed, round(100 * rate), cases[rate]["seconds"]),
            file=sys.stderr,
            flush=True,
        )
    references = {
        "true": true_mean_log_density(mixture, X_test),
        "complete": our_mixture(seed, n_init).fit(X_train).score(X_test),
    }
    return cases, references


def ours_against_best_other(values, ours, others, higher_is_better):
    """Per seed, how much ours beats the best other method; positive: ours wins.

    Parameters
    ----------
    values : dict of ndarray of shape (n_seeds,)
        One value per seed for each method name.

    Returns
    -------
    margins : ndarray of shape (n_seeds,)
    """
    other = np.vstack([values[name] for name in others])  # [n_others, n_seeds]
    if higher_is_better:
        return values[ours] - other.max(axis=0)
    return other.min(axis=0) - values[ours]


# --------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------


def comparison_table(results, key, methods, higher_is_better, value_format, extra):
    """One markdown row per missing rate: seed means, verdict and margins.

    Parameters
    ----------
    results : list of dict
        One `measure_seed` cases dict per seed.
    key : {"scores", "rmse"}
    methods : tuple of str
        Ours first, then the others.
    higher_is_better : bool
    value_format : str
    extra : (str, callable) or None
        A column heading and a function of the cases of one rate, for context.
    """
    ours, others = methods[0], methods[1:]
    header = ["missing"] + ([extra[0]] if extra else []) + list(methods)
    header += ["ours wins", "seeds won", "margin mean / min"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rate in MISSING_RATES:
        cases = [seed_cases[rate] for seed_cases in results]
        values = {
            name: np.array([case[key][name] for case in cases]) for name in methods
        }
        means = {name: v.mean() for name, v in values.items()}
        mean_margin = ours_against_best_other(
            {name: np.array([m]) for name, m in means.items()},
            ours,
            others,
            higher_is_better,
        )[0]
        margins = ours_against_best_other(values, ours, others, higher_is_better)
        cells = ["%d%%" % round(100 * rate)]
        cells += [extra[1](cases)] if extra else []
        cells += [value_format % means[name] for name in methods]
        cells += [
            "yes" if mean_margin > 0 else "**NO**",
            "%d / %d" % ((margins > 0).sum(), len(margins)),
            (value_format + " / " + value_format) % (margins.mean(), margins.min()),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def control_summary(results):
    """The seed-mean held-out score of OURS_ITERATIVE at each rate, as a phrase."""
    return ", ".join(
        "%.4f (%d%%)"
        % (
            np.mean(
                [seed_cases[rate]["scores"][OURS_ITERATIVE] for seed_cases in results]
            ),
            round(100 * rate),
        )
        for rate in MISSING_RATES
    )


def _rows_summary(cases):
    """Seed-mean numbers of complete and of entirely missing training rows."""
    return "%.0f / %.0f" % (
        np.mean([c["n_complete_rows"] for c in cases]),
        np.mean([c["n_empty_rows"] for c in cases]),
    )


def unconverged_summary(results):
    """Which fits stopped at their max_iter, and how often, as one phrase."""
    cases = [case for seed_cases in results for case in seed_cases.values()]
    counts = {}
    for case in cases:
        for name in case["unconverged"]:
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return "none of the %d cases" % len(cases)
    return "; ".join(
        "%s in %d of %d cases" % (name, count, len(cases))
        for name, count in counts.items()
    )


def report(results, references, seeds, n_init, command, revision, seconds):
    """The markdown report of a run."""
    return "\n".join(
        [
            "# Missing entries (MCAR): held-out density and imputation error",
            "",
            "`%s`" % command,
            "",
            "Data: %d-component, %d-feature anisotropic Gaussian mixture "
            "(mean spread %g), %d training rows with entries missing completely "
            "at random, %d held-out complete rows; a new mixture, sample and mask "
            "per seed; seeds %s."
            % (
                N_COMPONENTS,
                N_FEATURES,
                MEAN_SPREAD,
                N_TRAIN,
                N_TEST,
                ", ".join(map(str, seeds)),
            ),
            "Mixture parameters, for every mixture fit and our imputer: %s, "
            "random_state=seed, other parameters at their defaults. "
            "IterativeImputer(random_state=seed, max_iter=%d); KNNImputer() "
            "(n_neighbors=5)."
            % (
                ", ".join("%s=%r" % kv for kv in mixture_parameters(n_init).items()),
                ITERATIVE_IMPUTER_MAX_ITER,
            ),
            "",
            "## Held-out mean log density (nats, higher is better)",
            "",
            comparison_table(
                results,
                "scores",
                DENSITY_METHODS,
                True,
                "%.4f",
                ("rows complete / empty", _rows_summary),
            ),
            "",
            "For reference, mean over seeds of the held-out mean log density "
            "under the true mixture: %.4f; of our fit of the complete training "
            "data: %.4f."
            % (
                np.mean([r["true"] for r in references]),
                np.mean([r["complete"] for r in references]),
            ),
            "Control, not counted above: our mixture fitted to the same "
            "IterativeImputer output as (d) scores %s; its difference from (d) "
            "is the mixture library's share of the gap of (d), the rest is the "
            "imputation's." % control_summary(results),
            "Ours and sklearn each report their own `score`: ours the posterior "
            "predictive (Student-t mixture), sklearn the plug-in Gaussian "
            "mixture at its point estimate.",
            "",
            "## Imputation RMSE over the missing entries (lower is better)",
            "",
            comparison_table(results, "rmse", IMPUTERS, False, "%.4f", None),
            "",
            "Margins: ours minus the best other method of the same seed, signed "
            "so that positive means ours is better; 'ours wins' compares the "
            "seed means.",
            "Fits stopped at max_iter (the mixtures, IterativeImputer): %s."
            % unconverged_summary(results),
            "",
            "skbayesmix %s, %s" % (skbayesmix.__version__, platform.platform()),
            *environment_lines(None, revision),
            "total wall time: %.0f s" % seconds,
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="%d seeds instead of %d" % (SEEDS[True], SEEDS[False]),
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="run seeds 0 .. N-1 (default: %d, or %d with --quick)"
        % (SEEDS[False], SEEDS[True]),
    )
    parser.add_argument(
        "--n-init",
        type=int,
        default=3,
        help="n_init of every mixture fit (default: 3)",
    )
    parser.add_argument("--output", help="also write the markdown report here")
    args = parser.parse_args(argv)
    n_seeds = SEEDS[args.quick] if args.seeds is None else args.seeds
    if n_seeds < 1:
        parser.error("--seeds must be at least 1")

    # Both libraries' mixtures and IterativeImputer may stop at max_iter; the
    # report counts those fits instead of printing a warning for each.
    warnings.simplefilter("ignore", ConvergenceWarning)
    revision = _package_revision()
    start = time.perf_counter()
    seeds = list(range(n_seeds))
    results, references = [], []
    for seed in seeds:
        cases, reference = measure_seed(seed, args.n_init)
        results.append(cases)
        references.append(reference)
    command = "PYTHONPATH=. python benchmarks/bench_missing.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = report(
        results,
        references,
        seeds,
        args.n_init,
        command.strip(),
        revision,
        time.perf_counter() - start,
    )
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return results, references


if __name__ == "__main__":
    main()
