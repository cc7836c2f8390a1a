"""No import circles in anygpt, and no arrow up the house.

Every `import` of an anygpt module, at the top of a file or in a function, is an edge; so is every
string constant "anygpt.x.y:function" (the tokenizer registry's loaders, imported at run time)
and, in a file that calls importlib.import_module, every string constant that names an anygpt
module (the command tables). A logger name or `python -m anygpt.cli` elsewhere is no import. The
graph has no cycle. (Importing a package's submodule runs the package's __init__ first; that
implicit edge is not counted, as every package's submodules import their siblings.)

LAYERS orders the house from the leaves up: helpers, token layout, nn, modalities, lm, data,
train, model, loaders, then the commands (chat, serve, eval, pipeline) and the dispatcher. An
upward arrow is an edge from a module to one of a higher layer.

    python3 tests/test_imports.py [SRC [TESTS]]   # the circles, upward arrows and untested modules
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# the house from the bottom up; a module belongs to the first entry that is it or a package above it
LAYERS: list[tuple[str, ...]] = [
    ("anygpt.errors",),
    ("anygpt.files", "anygpt.manifest", "anygpt.cli_flags", "anygpt.workers", "anygpt.media_headers", "anygpt.media_io",
     "anygpt.asset_paths", "anygpt.token_spec"),
    ("anygpt.parts", "anygpt.instructions", "anygpt.layout", "anygpt.templates", "anygpt.sequence_files",
     "anygpt.modality_choice"),
    ("anygpt.nn",),
    ("anygpt.modalities",),
    ("anygpt.lm",),
    ("anygpt.data",),
    ("anygpt.train",),
    ("anygpt.conversation", "anygpt.model_parts", "anygpt.model"),
    ("anygpt.loaders",),
    ("anygpt.eval", "anygpt.serve", "anygpt.chat_cli", "anygpt.pipeline"),
    ("anygpt.cli", "anygpt"),
]
IMPORT_STRING = re.compile(r"(anygpt(?:\.\w+)+)(:\w+)?")


def layer(module: str) -> int:
    """The index in LAYERS of a module (its own entry, else its nearest package's)."""
    name = module
    while name:
        for i, names in enumerate(LAYERS):
            if name in names:
                return i
        name = name.rpartition(".")[0]
    raise KeyError(f"{module}: in no layer of tests/test_imports.py LAYERS; add it")


def upward_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The edges (a, b) where a imports b of a higher layer."""
    return sorted((a, b) for a, bs in graph.items() for b in bs if layer(b) > layer(a))


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The anygpt modules one file imports by statement (absolute imports only, as tests write)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("anygpt"):
                found.add(name)
    return found


def untested_modules(src: Path = SRC, tests: Path = SRC.parent / "tests") -> list[str]:
    """The anygpt modules (not packages' __init__) that no file under tests/ imports."""
    modules = {module_name(p, src): p for p in (src / "anygpt").rglob("*.py")}
    seen = set().union(*(imported_modules(p, set(modules)) for p in tests.rglob("*.py")))
    return sorted(m for m, p in modules.items() if p.name != "__init__.py" and m not in seen)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """anygpt module -> the anygpt modules it imports anywhere in its file, by statement or by a
    string that importlib imports at run time."""
    files = {module_name(p, src): p for p in (src / "anygpt").rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        text = path.read_text(encoding="utf-8")
        dynamic = "import_module(" in text
        for node in ast.walk(ast.parse(text)):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = IMPORT_STRING.fullmatch(node.value)
                if found and found.group(1) in files and (found.group(2) or dynamic):
                    targets = [found.group(1)]
            for t in targets:
                while t and t not in files:  # `import anygpt.x.y` -> the module; unknown names -> their module
                    t = t.rpartition(".")[0]
                if t.startswith("anygpt") and t in files and t != mod:
                    graph[mod].add(t)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 80 and "anygpt.loaders" in graph["anygpt.chat_cli"]  # the graph is really read
    assert "anygpt.modalities.image_tokenizers" in graph["anygpt.modalities.image"]  # and its strings
    assert "anygpt.chat_cli" in graph["anygpt.cli"]
    assert circles(graph) == []


def test_no_upward_arrows():
    assert upward_arrows(import_graph()) == []


def test_strings_are_edges_and_layers_order_them(tmp_path):
    pkg = tmp_path / "anygpt"
    (pkg / "lm").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "lm" / "__init__.py").write_text("")
    (pkg / "errors.py").write_text('LOADER = "anygpt.lm.engine:Engine"\nHELP = "see anygpt.lm.engine"\n')
    (pkg / "lm" / "engine.py").write_text("from anygpt.errors import LOADER\n")
    (pkg / "lm" / "table.py").write_text('import importlib\nNAMES = ["anygpt.lm.engine", "anygpt.errors x"]\n'
                                         'importlib.import_module(NAMES[0])\n')
    (pkg / "lm" / "log.py").write_text('import logging\nlog = logging.getLogger("anygpt.lm.engine")\n')
    graph = import_graph(tmp_path)
    assert graph["anygpt.errors"] == {"anygpt.lm.engine"}  # the sentence is no edge
    assert graph["anygpt.lm.table"] == {"anygpt.lm.engine"} and graph["anygpt.lm.log"] == set()
    assert circles(graph) == [["anygpt.errors", "anygpt.lm.engine"]]
    assert upward_arrows(graph) == [("anygpt.errors", "anygpt.lm.engine")]
    assert layer("anygpt.lm.engine") == layer("anygpt.lm") > layer("anygpt.errors")


def test_the_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else SRC
    g = import_graph(src)
    found = circles(g)
    print(f"{len(found)} import circles")
    for c in found:
        print("  " + " <-> ".join(c))
    up = upward_arrows(g)
    print(f"{len(up)} upward arrows")
    for a, b in up:
        print(f"  {a} -> {b}")
    untested = untested_modules(src, Path(sys.argv[2]) if len(sys.argv) > 2 else src.parent / "tests")
    print(f"{len(untested)} of {sum(1 for p in (src / 'anygpt').rglob('*.py') if p.name != '__init__.py')} "
          "modules no test imports")
    for m in untested:
        print(f"  {m}")
