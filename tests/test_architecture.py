"""The layering the design promises, checked on the source: import direction, private names, the dealer.

Dependencies run one way, ``cli -> genomics -> protocols -> mpc``; ``mpc`` imports the
generated ``proto`` modules only on its gRPC side; the plaintext twins in
``genomics/reference`` serve tests and benchmarks only; no module reads another
module's underscore names; and the dealer finds every correlated-randomness recipe
without importing the workloads.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["mpc", "protocols", "genomics", "cli", "proto"]
#: a module may import its own layer and the layers below it
RANK = {"mpc": 0, "protocols": 1, "genomics": 2, "cli": 3}
#: the gRPC side of the engine: the only modules that import the generated wire code
GRPC_MODULES = {"cipherome.mpc.grpc_transport", "cipherome.mpc.daemon", "cipherome.mpc.client"}


def _modules():
    """(dotted module name, is_package, path, AST) of every source module of the package."""
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            yield "cipherome." + ".".join(parts), is_pkg, path, ast.parse(path.read_text(), str(path))


def _imports(name: str, is_pkg: bool, tree: ast.AST):
    """(line, absolute module imported) for every import statement, function-local ones included."""
    package = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None:  # from . import a, b: each name is a module
                for a in node.names:
                    yield node.lineno, f"{mod}.{a.name}"
            else:
                yield node.lineno, mod


def _layer(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cipherome" else None


def test_imports_follow_cli_genomics_protocols_mpc():
    bad = []
    for name, is_pkg, path, tree in _modules():
        mine = _layer(name)
        if mine == "proto":
            continue
        for line, mod in _imports(name, is_pkg, tree):
            theirs = _layer(mod)
            if theirs is None:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {mod}"
            if theirs == "proto":
                if name not in GRPC_MODULES:
                    bad.append(where + " (only the gRPC side of mpc imports proto)")
            elif RANK[theirs] > RANK[mine]:
                bad.append(where + f" ({mine} must not import {theirs})")
    assert not bad, "imports against the layering cli -> genomics -> protocols -> mpc:\n" + "\n".join(bad)


def test_reference_twins_are_imported_only_by_tests_and_benchmarks():
    bad = [f"{path.relative_to(ROOT)}:{line} imports {mod}"
           for name, is_pkg, path, tree in _modules() if not name.startswith("cipherome.genomics.reference")
           for line, mod in _imports(name, is_pkg, tree) if mod.startswith("cipherome.genomics.reference")]
    assert not bad, "runtime modules import the plaintext twins:\n" + "\n".join(bad)


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Underscore names a module defines itself: functions, classes, globals, attributes it assigns."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias):
            out.add(node.asname or node.name.split(".")[0])
    return {n for n in out if n.startswith("_") and not n.startswith("__")}


def _private(n: str) -> bool:
    return n.startswith("_") and not n.startswith("__")


def test_no_module_reads_another_modules_underscore_names():
    modules = list(_modules())
    defined = {name: _defined_private_names(tree) for name, _, _, tree in modules}
    ours = set().union(*defined.values())
    bad = []
    for name, is_pkg, path, tree in modules:
        if _layer(name) == "proto":
            continue  # generated code
        here = defined[name]
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                internal = node.level > 0 or mod.startswith("cipherome")
                for a in node.names:
                    if internal and _private(a.name):
                        bad.append(f"{where}: from {'.' * node.level}{mod} import {a.name}")
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                obj = node.value
                if isinstance(obj, ast.Name) and obj.id in ("self", "cls"):
                    continue
                # a name this module defines is its own business (e.g. a helper class beside it);
                # one only another cipherome module defines is a read of that module's internals
                if node.attr not in here and node.attr in ours:
                    bad.append(f"{where}: {ast.unparse(node)}")
    assert not bad, "reads of another module's private names:\n" + "\n".join(bad)


def test_dealer_loads_every_recipe_without_the_workloads():
    """The recipes the dealer imports (``mpc.correlated.load_recipes``) are all there are, and
    importing them pulls in no genomics module."""
    code = (
        "import sys\n"
        "from cipherome.mpc import correlated as c\n"
        "c.load_recipes()\n"
        "dealer = set(c.RECIPES)\n"
        "leaked = sorted(m for m in sys.modules if m.startswith(('cipherome.genomics', 'cipherome.cli')))\n"
        "from cipherome.mpc.jobs import load_plugins\n"
        "load_plugins()\n"
        "import cipherome.genomics.jobs\n"
        "print(repr((leaked, sorted(set(c.RECIPES) - dealer))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    leaked, missing = eval(out.stdout.strip().splitlines()[-1])
    assert leaked == [], f"the dealer's recipe modules import {leaked}"
    assert missing == [], f"recipes registered outside the dealer's recipe modules: {missing}"
