"""The README and the user guide run as written; the built site has no dead links.

Each page's Python blocks run in order as one script, in a fresh namespace. A
block that starts a Dask cluster carries its own ``if __name__ == "__main__":``
guard, because worker processes import the script again; it runs alone, as a
script in its own process, as a reader would run it. The pages without such a
block share one process, so that TensorFlow is imported once.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Made by the build, not written by hand.
BUILT = ("_build", "auto_examples", "generated")

MAIN_GUARD = 'if __name__ == "__main__":'


def _pages():
    pages = [ROOT / "README.md"]
    pages += sorted(
        path
        for path in DOCS.rglob("*.rst")
        if not set(path.relative_to(DOCS).parts) & set(BUILT)
        and path.name != "sg_execution_times.rst"
    )
    return pages


def _markdown_blocks(text):
    return [block for block in re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)]


def _rst_blocks(text):
    blocks = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if re.fullmatch(r"\s*\.\. code-block:: python\s*", line):
            indent = len(line) - len(line.lstrip())
            body = []
            for following in lines[i + 1 :]:
                if (
                    following.strip()
                    and len(following) - len(following.lstrip()) <= indent
                ):
                    break
                body.append(following)
            blocks.append(textwrap.dedent("\n".join(body)).strip("\n") + "\n")
    return blocks


def python_blocks(page):
    text = page.read_text()
    return _markdown_blocks(text) if page.suffix == ".md" else _rst_blocks(text)


def _name(page):
    return str(page.relative_to(ROOT))


SCRIPTS = {}  # name -> source, for the pages and blocks without a cluster
DASK_SCRIPTS = {}  # name -> source, one per block with the __main__ guard
for _page in _pages():
    _blocks = python_blocks(_page)
    _plain = [block for block in _blocks if MAIN_GUARD not in block]
    if _plain:
        SCRIPTS[_name(_page)] = "\n".join(_plain)
    for _i, _block in enumerate(block for block in _blocks if MAIN_GUARD in block):
        DASK_SCRIPTS[f"{_name(_page)}[dask {_i}]"] = _block

# Runs each script in a fresh namespace, as __main__, and records its error.
RUNNER = """
import json, runpy, sys, traceback
scripts, out = json.load(open(sys.argv[1])), {}
for name, path in scripts.items():
    try:
        runpy.run_path(path, run_name="__main__")
        out[name] = None
    except BaseException:
        out[name] = traceback.format_exc()
    import matplotlib.pyplot as plt
    plt.close("all")
json.dump(out, open(sys.argv[2], "w"))
"""


def _environment():
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


def test_every_page_with_python_has_its_blocks_found():
    # The extraction itself: the pages that show code are the ones tested.
    assert "README.md" in SCRIPTS
    assert any(name.startswith("README.md") for name in DASK_SCRIPTS)
    assert "docs/user_guide/persistence.rst" in SCRIPTS
    assert "docs/user_guide/dask.rst[dask 0]" in DASK_SCRIPTS


@pytest.fixture(scope="module")
def page_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    paths = {}
    for i, (name, source) in enumerate(SCRIPTS.items()):
        paths[name] = str(folder / f"page_{i}.py")
        Path(paths[name]).write_text(source)
    (folder / "scripts.json").write_text(json.dumps(paths))
    (folder / "runner.py").write_text(RUNNER)
    subprocess.run(
        [
            sys.executable,
            str(folder / "runner.py"),
            str(folder / "scripts.json"),
            str(folder / "results.json"),
        ],
        cwd=folder,
        env=_environment(),
        check=True,
        timeout=600,
    )
    return json.loads((folder / "results.json").read_text())


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_page_python_blocks_run_as_written(name, page_results):
    assert page_results[name] is None, f"{name} failed:\n{page_results[name]}"


@pytest.mark.parametrize("name", sorted(DASK_SCRIPTS))
def test_dask_block_runs_as_a_script(name, tmp_path):
    pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    script = tmp_path / "script.py"
    script.write_text(DASK_SCRIPTS[name])
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stderr[-3000:]}"


def test_api_reference_lists_every_public_name():
    import skbayesmix
    from skbayesmix import plotting

    listed = set(re.findall(r"^   (\w+)$", (DOCS / "api.rst").read_text(), re.M))
    assert listed == set(skbayesmix.__all__) | set(plotting.__all__)


def test_readme_is_a_product_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    # No commit hashes and no lab-notebook phrases: those belong to the history.
    assert not re.findall(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", text)
    for phrase in ("this round", "previous table", "our reading"):
        assert phrase not in text.lower()


class _Links(HTMLParser):
    """The ids a page defines and the links (href, src) it makes."""

    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def broken_internal_links(html_root):
    """(page, link) of every relative link to a missing file or anchor."""
    pages = {}
    for path in html_root.rglob("*.html"):
        if path.relative_to(html_root).parts[0] in ("_static", "_sources"):
            continue  # the theme's templates and the page sources, not pages
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = parser
    broken = []
    for path, parser in pages.items():
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "//")):
                continue
            target = (
                (path.parent / unquote(parts.path)).resolve() if parts.path else path
            )
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append((str(path.relative_to(html_root.resolve())), link))
            elif parts.fragment and target in pages:
                if unquote(parts.fragment) not in pages[target].ids:
                    broken.append((str(path.relative_to(html_root.resolve())), link))
    return broken


def test_built_site_has_no_broken_internal_links(tmp_path):
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme"):
        pytest.importorskip(module)
    # Build a copy without running the gallery (plot_gallery=0): the pages and
    # their links are all there, at a few seconds' cost. .ci/run builds the
    # full site, examples run, with the same -W.
    source = tmp_path / "repo"
    ignore = shutil.ignore_patterns(*BUILT, "sg_execution_times.rst", "*.png")
    shutil.copytree(DOCS, source / "docs", ignore=shutil.ignore_patterns(*BUILT))
    shutil.copytree(ROOT / "examples", source / "examples", ignore=ignore)
    (source / "skbayesmix").symlink_to(ROOT / "skbayesmix")
    html = tmp_path / "html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-D",
            "sphinx_gallery_conf.plot_gallery=0",
            str(source / "docs"),
            str(html),
        ],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (html / "api.html").exists()
    assert (html / "auto_examples" / "plot_tutorial.html").exists()
    assert broken_internal_links(html) == []


def test_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "a.html").write_text(
        '<p id="here"><a href="#here">ok</a><a href="b.html#nowhere">x</a>'
        '<a href="c.html">y</a><a href="https://example.org/z.html">z</a></p>'
    )
    (tmp_path / "b.html").write_text('<p id="somewhere"></p>')
    assert broken_internal_links(tmp_path) == [
        ("a.html", "b.html#nowhere"),
        ("a.html", "c.html"),
    ]
