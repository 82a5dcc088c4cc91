"""The package's layers are visible and checked: every graftlm import sits at the top of its file
(a function-level import hides the real graph and can mask a cycle; optional third-party
backends such as matplotlib or xformers may still load lazily), and import-linter's contracts
(pyproject.toml: core ← evaluation ← training ← apps, no exceptions) hold."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "graftlm"
# optional or heavy third-party backends that a function may load when it needs them
LAZY_BACKENDS = ("matplotlib", "psutil", "resource", "pyarrow", "datasets", "torch.utils.tensorboard", "gguf",
                 "xformers")


def function_imports(tree: ast.AST, *, skip_try: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function body; ``skip_try``: not those inside a
    ``try`` block (a fallback for another library version)."""
    in_try = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for n in ast.walk(t)} if skip_try else set()
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if id(node) in in_try:
                    continue
                if isinstance(node, ast.Import):
                    found += [(node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_function_import_finder_sees_nested_imports():
    tree = ast.parse("import os\ndef f():\n    if True:\n        from graftlm.vae import SentenceVAE\n")
    assert function_imports(tree) == [(4, "graftlm.vae")]


def test_no_graftlm_import_inside_a_function():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module in function_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module.startswith((".", "graftlm")):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not bad, "move these imports to the top of their files:\n" + "\n".join(bad)


def test_only_optional_backends_are_imported_lazily():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module in function_imports(ast.parse(path.read_text(encoding="utf-8")), skip_try=True):
            if not any(module == b or module.startswith(b + ".") for b in LAZY_BACKENDS):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not bad, "import these at the top of their files:\n" + "\n".join(bad)


def test_import_contracts_hold():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    res = subprocess.run([lint, "--config", str(PACKAGE.parent / "pyproject.toml"), "--no-cache"],
                         cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_files():
    built = grimp.build_graph("graftlm", exclude_type_checking_imports=True, cache_dir=None)
    graph = {m: built.find_modules_directly_imported_by(m) for m in built.modules}
    cycle = import_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
