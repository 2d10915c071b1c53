"""The package's layout rules, read from the source (issue: the layered house).

Every import statement counts, function-level ones included; relative imports are resolved.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

PKG = Path(__file__).resolve().parents[2] / "ebseg_lite"
OUTER = ("toyworld", "notebook", "viz", "cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> Dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(path: Path, modules: Dict[str, Path]) -> Set[str]:
    """Package modules imported anywhere in ``path`` (``from x import y`` counts y when y is a module)."""
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    return imports_of_source(path.read_text(), me, pkg, modules)


def imports_of_source(source: str, me: str, pkg: str, modules: Dict[str, Path]) -> Set[str]:
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in modules and "." in n:
                n = n.rsplit(".", 1)[0]
            if n in modules and n != me and n != "ebseg_lite":
                found.add(n)
    return found


def graph() -> Dict[str, Set[str]]:
    mods = package_modules()
    return {m: imports_of(p, mods) for m, p in mods.items()}


def room(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else "(top)"


def test_no_import_cycles():
    g = graph()
    state: Dict[str, int] = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cyc = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cyc))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_core_imports_no_outer_room():
    bad = [f"{m} imports {n}" for m, deps in graph().items() if room(m) not in OUTER
           for n in deps if room(n) in OUTER]
    assert bad == [], "the core must not import toyworld/, notebook/, viz/ or cli/: " + "; ".join(bad)


def test_files_short_and_top_level_small():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}, f"package files over 300 lines: {long}"
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 10, f"{len(top)} modules directly in ebseg_lite/: {top}"


def test_production_code_has_no_pytest_markers():
    hits = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if "__test__" in p.read_text()]
    assert hits == []


def test_checker_sees_function_level_imports():
    # the reader must catch an import inside a function and resolve a relative one, or the cycle
    # and layering tests above prove nothing
    mods = package_modules()
    source = "def f():\n    from ..toyworld import presets\n    from ebseg_lite.viz.overlays import overlay\n"
    got = imports_of_source(source, "ebseg_lite.inference.outputs", "ebseg_lite.inference", mods)
    assert got == {"ebseg_lite.toyworld", "ebseg_lite.toyworld.presets", "ebseg_lite.viz.overlays"}
    assert "ebseg_lite.toyworld.plugin" not in imports_of(PKG / "registry.py", mods)  # a string, not an import
