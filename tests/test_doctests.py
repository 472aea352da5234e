"""Every `>>>` example in the package's docstrings runs and shows what it prints (TensorFlow backend)."""

import doctest
import importlib
import os

import pytest

from tests.test_architecture import MODULES

# `python -m keras_focal.cli` runs the command line when imported.
NOT_IMPORTABLE = {"keras_focal.cli.__main__"}
MODULES_WITH_EXAMPLES = sorted(
    name for name, (path, _) in MODULES.items() if name not in NOT_IMPORTABLE and ">>>" in open(path).read()
)


@pytest.mark.parametrize("module", MODULES_WITH_EXAMPLES)
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    imported = importlib.import_module(module)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples, report = 0, []
    for test in finder.find(imported, module, globs=dict(vars(imported))):
        if test.examples and test.filename and os.path.samefile(test.filename, imported.__file__):
            runner.run(test, out=report.append)
            examples += len(test.examples)
    assert examples > 0, f"{module} shows `>>>` but no example was found"
    assert runner.failures == 0, "".join(report)


def test_the_package_has_examples():
    assert len(MODULES_WITH_EXAMPLES) >= 10, MODULES_WITH_EXAMPLES
