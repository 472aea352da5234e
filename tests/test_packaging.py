"""One distribution, one import namespace, and a working console entry point."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest


def test_models_and_data_prep_live_under_keras_focal():
    import keras_focal.data_prep
    import keras_focal.models

    root = pathlib.Path(__file__).resolve().parents[1]
    assert pathlib.Path(keras_focal.models.__file__).resolve() == root / "models" / "__init__.py"
    assert pathlib.Path(keras_focal.data_prep.__file__).resolve() == root / "data_prep" / "__init__.py"


def test_no_top_level_models_or_data_prep_leak(tmp_path):
    # Run from an empty folder so the checkout itself is not on sys.path.
    code = "import importlib.util as u; print(u.find_spec('models'), u.find_spec('data_prep'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "None None"
    assert importlib.util.find_spec("keras_focal.models") is not None


def test_console_entry_point_help():
    script = pathlib.Path(sys.executable).with_name("keras-focal")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert "usage: keras-focal" in result.stdout and "demo" in result.stdout


@pytest.mark.parametrize(
    "code",
    [
        "import keras_focal",
        "import keras_focal.data_prep",
        "import keras_focal.cli; keras_focal.cli.build_parser()",
        "from keras_focal.training import RunConfig",
    ],
)
def test_the_command_line_and_data_prep_start_without_a_deep_learning_framework(code):
    """`keras-focal --help` and `prep` used to import TensorFlow first (7.5 s, 678 MiB)."""
    import subprocess
    import sys

    check = f"{code}\nimport sys\nprint(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_submodules_load_on_first_use():
    import subprocess
    import sys

    check = "import keras_focal\nprint(type(keras_focal.losses.DualFocalLoss()).__name__, 'models' in dir(keras_focal))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["DualFocalLoss", "True"]


def test_the_training_package_exports_what_its_docstring_names():
    """`from keras_focal.training import compare` gave the module, though the package advertised a function."""
    import subprocess
    import sys

    check = ("import inspect\nfrom keras_focal.training import CompareConfig, RunConfig, compare, prepare_run, train_run\n"
             "print(*(inspect.isfunction(f) for f in (compare, prepare_run, train_run)), inspect.isclass(CompareConfig),"
             " inspect.isclass(RunConfig))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-5:] == ["True"] * 5


def test_the_wheel_holds_every_module_the_license_and_the_types(tmp_path):
    """The built wheel, not the checkout: every source module at its installed name, LICENSE, py.typed; twine passes it."""
    import shutil
    import zipfile

    from tests.test_architecture import MODULES

    root = pathlib.Path(__file__).resolve().parents[1]
    # A copy of the sources: setuptools reuses a checkout's build/ folder, which may hold modules no longer listed.
    source = tmp_path / "source"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "tests", "notebooks", "bench", "docs", "demo_output"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("keras_focal-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {name.replace(".", "/") + ("/__init__.py" if is_init else ".py") for name, (_, is_init) in MODULES.items()}
    assert sorted(expected - names) == []
    assert "keras_focal/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names)
    # The metadata and the README as PyPI's long description, as twine checks them before an upload.
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
