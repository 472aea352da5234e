"""The package's parts depend only downward, counting imports inside functions (a lazy import hides a cycle, it
does not remove one), and no part uses another's private names."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Source folder -> the package it is installed as.
FOLDERS = {"keras_focal": "keras_focal", "data_prep": "keras_focal.data_prep", "models": "keras_focal.models"}
PACKAGES = ("losses", "layers", "models", "data_prep", "inference", "reporting", "training", "experiments", "cli")

# What each part below the command line may import (besides itself): the layers of the README's layout, from
# the bottom (losses, layers, models, data, files) through metrics, reporting, inference and training. The
# command line (cli) and the demo may import any part; the graph must stay acyclic. Every part may import
# `keras_focal.types` (type aliases, below everything).
ALLOWED = {
    "losses": {"loss_names"},
    "layers": set(),
    "initializers": set(),
    "models": {"layers", "initializers"},
    "data_prep": {"errors", "files", "class_weights"},
    "files": set(),
    "errors": set(),
    "run_folder": {"files"},
    "metrics": set(),
    "evaluation": {"files"},
    "types": set(),
    "loss_names": set(),
    "model_names": set(),
    "optimizer_names": set(),
    "reporting": {"evaluation", "files", "loss_names", "model_names", "optimizer_names", "data_prep"},
    "inference": {"data_prep", "errors", "files", "evaluation", "run_folder", "reporting"},
    "export": {"errors", "files"},
    "training": {"losses", "layers", "initializers", "models", "metrics", "data_prep", "errors", "files", "run_folder",
                 "class_weights", "loss_names", "model_names", "optimizer_names", "evaluation", "reporting", "inference"},
}


def _modules():
    """`(module name, path, is package __init__)` of every source file of the installed package."""
    for folder, package in FOLDERS.items():
        for directory, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(names):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, os.path.join(ROOT, folder))[:-3].replace(os.sep, ".")
                is_init = relative == "__init__" or relative.endswith(".__init__")
                relative = relative[: -len("__init__")].rstrip(".") if is_init else relative
                yield (package + "." + relative).rstrip("."), path, is_init


MODULES = {name: (path, is_init) for name, path, is_init in _modules()}


def part_of(module):
    """The part a module belongs to: a subpackage (`losses`, `data_prep`, ...) or a top-level module."""
    pieces = module.split(".")
    if len(pieces) == 1:
        return None  # the package's facade (keras_focal/__init__.py: lazy attributes only)
    return pieces[1] if pieces[1] in PACKAGES or len(pieces) == 2 else pieces[1]


def _imports(module):
    """`(imported module, names, line)` of every keras_focal import of `module`, at any depth of its code."""
    path, is_init = MODULES[module]
    package = module if is_init else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_focal."):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("keras_focal"):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # `from keras_focal import loss_names`: the module itself
                    yield submodule, [], node.lineno
                else:
                    yield base, [alias.name], node.lineno


def _graph():
    edges = {}
    for module in MODULES:
        source = part_of(module)
        if source is None:
            continue
        for target, _, line in _imports(module):
            destination = part_of(target)
            if destination is not None and destination != source:
                edges.setdefault(source, {}).setdefault(destination, f"{module}:{line}")
    return edges


def test_the_parts_import_each_other_without_a_cycle():
    edges = _graph()
    state, path = {}, []

    def visit(part):
        state[part] = "open"
        path.append(part)
        for target in sorted(edges.get(part, {})):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                where = [edges[a][b] for a, b in zip(cycle, cycle[1:])]
                pytest.fail(f"import cycle {' -> '.join(cycle)} (at {', '.join(where)})")
            if target not in state:
                visit(target)
        path.pop()
        state[part] = "done"

    for part in sorted(edges):
        if part not in state:
            visit(part)


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_lower_parts_import_only_what_lies_below_them(part):
    used = _graph().get(part, {})
    extra = {target: where for target, where in used.items() if target not in ALLOWED[part] | {"types"}}
    assert not extra, f"{part} imports {sorted(extra)} ({', '.join(extra.values())})"


def test_no_private_name_is_imported_from_another_part():
    crossing = []
    for module in MODULES:
        for target, names, line in _imports(module):
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            if private and part_of(target) != part_of(module):
                crossing.append(f"{module}:{line} imports {private} from {target}")
    assert not crossing, crossing


def test_nothing_but_the_console_script_imports_the_command_line():
    importers = sorted({where for source, targets in _graph().items() if source != "cli"
                        for target, where in targets.items() if target == "cli"})
    assert not importers, f"the library imports the command line: {importers}"


def test_the_predict_parser_offers_exactly_the_library_choices():
    # The parser repeats them so that `--help` never imports the inference code.
    from keras_focal import inference
    from keras_focal.cli import predict

    assert predict.OUTPUT_FORMATS == inference.OUTPUT_FORMATS
    assert predict.TTA_MODES == inference.TTA_MODES
    assert predict.POSTPROCESS_MODES == inference.POSTPROCESS_MODES


LONG_FUNCTION_LINES = 60  # code lines, the docstring not counted
LONG_REASON = "# Long:"  # a function that stays longer says why, in a comment on its first line of code


def _functions():
    for module, (path, _) in MODULES.items():
        lines = open(path).read().split("\n")
        for node in ast.walk(ast.parse("\n".join(lines), path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield module, node, lines


def _code_lines(node):
    body = node.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str)
    first = body[0].end_lineno + 1 if has_docstring and len(body) > 1 else body[0].lineno
    return first, node.end_lineno - first + 1


def test_functions_a_reader_can_hold():
    too_long = []
    for module, node, lines in _functions():
        first, count = _code_lines(node)
        if count > LONG_FUNCTION_LINES and not lines[first - 1].strip().startswith(LONG_REASON):
            too_long.append(f"{module}.{node.name} ({count} lines)")
    assert not too_long, f"over {LONG_FUNCTION_LINES} lines without a '{LONG_REASON} ...' reason: {too_long}"


def _public_functions(tree):
    """`(qualified name, node, is method)` of the public functions and methods of a module's tree."""
    def visit(node, prefix, in_class):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                yield from visit(child, f"{prefix}{child.name}.", True)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not child.name.startswith("_") or child.name in ("__init__", "__call__"):
                    yield f"{prefix}{child.name}", child, in_class

    yield from visit(tree, "", False)


def test_every_public_function_is_annotated():
    unannotated = []
    for module, (path, _) in MODULES.items():
        if any(piece.startswith("_") for piece in module.split(".")[1:]):  # private modules (losses._base...)
            continue
        for name, node, is_method in _public_functions(ast.parse(open(path).read(), path)):
            arguments = node.args
            parameters = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
            parameters += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
            if is_method and parameters and parameters[0].arg in ("self", "cls"):
                parameters = parameters[1:]
            missing = [p.arg for p in parameters if p.annotation is None]
            if node.returns is None and node.name != "__init__":
                missing.append("return")
            if missing:
                unannotated.append(f"{module}.{name} ({', '.join(missing)})")
    assert not unannotated, f"public functions without annotations: {unannotated}"


def test_imports_inside_functions_say_why():
    """The command line imports the library inside its command functions (its docstring says why, once); elsewhere
    an import of the package inside a function is there to break a cycle, and a comment above it says so."""
    silent = []
    for module, (path, _) in MODULES.items():
        if module.startswith("keras_focal.cli"):
            continue
        lines = open(path).read().split("\n")
        for node in ast.walk(ast.parse("\n".join(lines), path)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("keras_focal"):
                    above = lines[inner.lineno - 2].strip()
                    if not above.startswith("#") and "#" not in lines[inner.end_lineno - 1]:
                        silent.append(f"{module}:{inner.lineno} {ast.unparse(inner)}")
    assert not silent, f"imports of the package inside functions without a reason: {silent}"
