"""The package's layout: wings import downwards only, with no cycles; and
modules and functions of a readable size.

The wings, from the top: cli -> training / evaluation / export -> sampling
(and plots) -> model / datasets / fid -> config, files, workdir. The imports
are read with `ast` from the source, so nothing is imported. The sizes
(`MAX_MODULE_LINES`, `MAX_FUNCTION_LINES`) are checked on the package and
the benchmarks, from their source too.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vae_balance"

# The rank of each wing (a subpackage or a top-level module): a module may
# import from its own wing or from a wing of a lower rank only.
RANKS = {
    "_version": 0,
    "_startup": 0,
    "_backend": 0,
    "files": 0,
    "workdir": 0,
    "config": 0,
    "datasets": 1,
    "model": 1,
    "fid": 1,
    "sampling": 2,
    "plots": 2,
    "export": 3,
    "training": 3,
    "evaluation": 3,
    "cli": 4,
    "__main__": 4,
    "": 4,  # vae_balance/__init__.py: the public API, above everything
}
# The dataset registry is TensorFlow-free facts (names, shapes, paddings)
# that config.py derives its padding from: it belongs to the bottom rank.
BOTTOM_MODULES = {"vae_balance.datasets", "vae_balance.datasets.registry"}


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module, node):
    """The vae_balance modules an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "vae_balance"]
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        base = module.split(".")
        base = base[: len(base) - node.level + is_package]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "vae_balance":
        return []
    names = [f"{target}.{a.name}" for a in node.names]
    submodules = [name for name in names if name in MODULES]
    # `from package import submodule` depends on the submodule; any other
    # name depends on the module (or package __init__) it comes from.
    return submodules + ([target] if len(submodules) < len(names) else [])


def _imports():
    """``{module: [(target, lineno, nested)]}`` of every vae_balance import."""
    found = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        entries = []

        def visit(node, nested, module=module, entries=entries):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, node):
                    entries.append((target, node.lineno, nested))
            inner = nested or isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            )
            for child in ast.iter_child_nodes(node):
                visit(child, inner)

        visit(tree, False)
        found[module] = entries
    return found


IMPORTS = _imports()


def _wing(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module):
    return 0 if module in BOTTOM_MODULES else RANKS[_wing(module)]


def test_every_module_belongs_to_a_ranked_wing():
    assert {_wing(m) for m in MODULES} <= set(RANKS)
    for module, entries in IMPORTS.items():
        for target, line, _ in entries:
            assert target in MODULES, f"{module}:{line} imports unknown {target}"


def _cycle(graph):
    """An import cycle of ``{module: {imported modules}}`` as a list, or None."""
    state = {}  # module -> "open" while on the path, "done" after

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    graph = {m: {t for t, _, _ in entries} for m, entries in IMPORTS.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _benchmark_imports():
    """``{script: {sibling scripts it imports}}`` of benchmarks/*.py,
    function-level imports included."""
    scripts = {p.stem: p for p in (ROOT / "benchmarks").glob("*.py")}
    graph = {}
    for name, path in scripts.items():
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            graph[name] |= {n.split(".")[0] for n in names} & set(scripts)
    return graph


def test_no_import_cycle_between_benchmark_scripts():
    graph = _benchmark_imports()
    assert {"common", "torch_peer", "compare_balancing"} <= set(graph)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_lower_wing_never_imports_a_higher_one():
    upward = [
        f"{module}:{line} ({_wing(module) or 'vae_balance'}, rank "
        f"{_rank(module)}) imports {target} (rank {_rank(target)})"
        for module, entries in IMPORTS.items()
        for target, line, _ in entries
        if _rank(target) > _rank(module)
    ]
    assert not upward, "\n".join(upward)


def test_wings_of_one_rank_do_not_import_each_other_both_ways():
    edges = {
        (_wing(module), _wing(target))
        for module, entries in IMPORTS.items()
        for target, _, _ in entries
        if _wing(module) != _wing(target)
        and module not in BOTTOM_MODULES
        and target not in BOTTOM_MODULES
    }
    assert not {(a, b) for a, b in edges if (b, a) in edges}


def test_no_function_level_import_of_the_package():
    nested = [
        f"{module}:{line} imports {target} inside a function or class"
        for module, entries in IMPORTS.items()
        for target, line, is_nested in entries
        if is_nested
    ]
    assert not nested, "\n".join(nested)


def _passed_on_names(paths):
    """``module:line name (from origin)`` of every ``from vae_balance.X import
    name`` whose ``X`` is a plain module (not a wing's ``__init__``) that only
    imported ``name`` itself: a re-export, which the layout forbids (a name is
    imported from the module that defines it, or from a wing's face)."""
    tree_of = {m: ast.parse(p.read_text(), str(p)) for m, p in paths.items()}
    imported = {}
    for module, tree in tree_of.items():
        imported[module] = {
            alias.asname or alias.name: node.module
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and not node.level
            for alias in node.names
        }
    found = []
    for module, tree in tree_of.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module not in paths:
                continue
            if paths[node.module].name == "__init__.py":
                continue
            for alias in node.names:
                origin = imported[node.module].get(alias.name)
                if origin is not None and f"{node.module}.{alias.name}" not in paths:
                    found.append(f"{module}:{node.lineno} {alias.name} (from {origin})")
    return found


def test_names_come_from_the_module_that_defines_them():
    passed_on = _passed_on_names({**MODULES, **_test_modules()})
    assert not passed_on, "re-exported names:\n" + "\n".join(passed_on)


def test_a_re_export_is_found(tmp_path):
    (tmp_path / "origin.py").write_text("def f():\n    return 1\n")
    (tmp_path / "middle.py").write_text("from origin import f\n\nvalue = f()\n")
    (tmp_path / "user.py").write_text("from middle import f, value\n")
    paths = {p.stem: p for p in tmp_path.glob("*.py")}
    assert _passed_on_names(paths) == ["user:1 f (from origin)"]


def _test_modules():
    """The test files, by a name that cannot clash with the package's."""
    tests = ROOT / "tests"
    return {
        f"tests.{p.relative_to(tests).with_suffix('')}": p for p in tests.rglob("*.py")
    }


def test_the_layout_checks_can_fail():
    # The parser sees a nested, upward import (this is what the tests reject).
    tree = ast.parse(
        "def f():\n    from vae_balance.cli import main\n", "vae_balance/model/x.py"
    )
    (node,) = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    (target,) = _resolve("vae_balance.model.vae", node)
    assert target == "vae_balance.cli.main"
    assert _rank(target) > _rank("vae_balance.model.vae")
    # A cycle is found, with its path; a chain is not a cycle.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


# ------------------------------------------------------------------ sizes
MAX_MODULE_LINES = 460
# A function's lines, ``end_lineno - lineno + 1`` (its docstring included).
# A longer one says why in a comment starting with "# Long:" on the line just
# above its ``def`` (or above its decorators), or on its first body line.
MAX_FUNCTION_LINES = 60
LONG_MARK = "# Long:"
SIZED = ("vae_balance", "benchmarks")


def _says_why_it_is_long(lines, node):
    """Whether a "# Long:" comment explains the length of ``node``."""
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    above = [lines[first - 2]] if first > 1 else []
    if node.decorator_list:
        above.append(lines[node.lineno - 2])
    # The first body line: a comment between the header and the first
    # statement (e.g. before the docstring), or the first statement's line.
    body_start = node.body[0].lineno
    body = [
        line
        for line in lines[node.lineno : body_start - 1]
        if line.lstrip().startswith("#")
    ] + [lines[body_start - 1]]
    return any(LONG_MARK in line for line in above + body)


def _size_offenders(paths, root):
    """``file lines`` of every long module and ``file:line name length`` of
    every long function without a "# Long:" reason, in ``paths``."""
    offenders = []
    for path in paths:
        text = path.read_text()
        lines = text.splitlines()
        name = path.relative_to(root).as_posix()
        if len(lines) > MAX_MODULE_LINES:
            offenders.append(f"{name} {len(lines)} lines (module)")
        for node in ast.walk(ast.parse(text, str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and not _says_why_it_is_long(lines, node):
                offenders.append(f"{name}:{node.lineno} {node.name} {length}")
    return offenders


def test_modules_and_functions_are_short_or_say_why():
    paths = sorted(p for folder in SIZED for p in (ROOT / folder).rglob("*.py"))
    assert paths
    offenders = _size_offenders(paths, ROOT)
    assert not offenders, (
        f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per "
        f'function (without a "{LONG_MARK} reason" comment):\n' + "\n".join(offenders)
    )


def test_the_size_checks_can_fail(tmp_path):
    body = "".join(f"    x = {i}\n" for i in range(MAX_FUNCTION_LINES))
    long_function = f"def long():\n{body}"
    (tmp_path / "plain.py").write_text(long_function)
    (tmp_path / "above.py").write_text(f"# Long: a reason\n{long_function}")
    (tmp_path / "inside.py").write_text(
        long_function.replace(":\n", ":\n    # Long: a reason\n", 1)
    )
    (tmp_path / "decorated.py").write_text(
        f"# Long: a reason\n@staticmethod\n{long_function}"
    )
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "short.py").write_text("def short():\n    return 1\n")
    offenders = _size_offenders(sorted(tmp_path.glob("*.py")), tmp_path)
    length = MAX_FUNCTION_LINES + 1
    assert offenders == [
        f"big.py {MAX_MODULE_LINES + 1} lines (module)",
        f"plain.py:1 long {length}",
    ]


# The bench keeps what is rerun (throughput and its PyTorch peer, the
# balancing comparison over seeds, the quality study); finished
# investigations leave the tree (docs/benchmarks.md, "Removed investigations").
# 2,000 until the quality study's second panel (GEN-2 against stage-2 epochs);
# 2,050 until step_curves.py (the quality study's runs continued from one
# stage-1 checkpoint with other settings, step by step).
MAX_BENCHMARK_LINES = 2170


def test_the_bench_stays_lean():
    lines = sum(
        len(p.read_text().splitlines()) for p in (ROOT / "benchmarks").glob("*.py")
    )
    assert lines <= MAX_BENCHMARK_LINES, f"benchmarks/*.py: {lines} lines"
