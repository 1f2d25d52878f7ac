"""The Examples in the docstrings of the public names run and print what they show."""

import doctest

import pytest

import skbayesmix
from skbayesmix import plotting

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

PUBLIC = {
    **{f"skbayesmix.{name}": getattr(skbayesmix, name) for name in skbayesmix.__all__},
    **{
        f"skbayesmix.plotting.{name}": getattr(plotting, name)
        for name in plotting.__all__
    },
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_examples_run(name):
    import matplotlib.pyplot as plt

    # Methods carry their own examples only where they add to the class's.
    tests = [
        test
        for test in doctest.DocTestFinder().find(PUBLIC[name], name, globs={})
        if test.examples
    ]
    assert tests, f"{name} has no Examples section"
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    try:
        for test in tests:
            runner.run(test)
    finally:
        plt.close("all")
    assert runner.failures == 0, f"{runner.failures} failing examples in {name}"
