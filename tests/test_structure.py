"""The library's shape: a small public API, packages in declared layers with no import cycles, one reader of
the environment, one owner of an index's layout."""

import ast
import re
from pathlib import Path

import retrieval
from conftest import REPO

PACKAGE = REPO / "retrieval"
SOURCES = [p for p in [*PACKAGE.rglob("*.py"), *(REPO / "ui").rglob("*.py"), REPO / "app.py"]
           if "__pycache__" not in p.parts]
# The library's sub-packages, lowest first: each may import those before it, never one after it, not even through
# the modules at the root of retrieval/ (errors, settings, images, index, ...), which all of them share.
# retrieval.evaluation may not exist yet; the rule holds all the same.
LIBRARY_LAYERS = ("retrieval.embedders", "retrieval.evaluation", "retrieval.training")
# The program: the library, the UI built on it, the app that wires both.
PROGRAM_LAYERS = ("retrieval", "ui", "app")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Modules among `modules` that `path` imports anywhere (top level or inside functions)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            for alias in node.names:  # `from . import x` names a module; `from .x import y` names module .x
                if f"{target}.{alias.name}" in modules:
                    found.add(f"{target}.{alias.name}")
                elif target in modules:
                    found.add(target)
    found.discard(here)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the program (retrieval/, ui/, app.py) it imports. A package's __init__ importing
    its own submodules is how Python packages work, so those edges are left out."""
    modules = {module_name(p) for p in SOURCES}
    graph = {module_name(p): imports_of(p, modules) for p in SOURCES}
    return {m: {t for t in targets if not m.startswith(t + ".") and not t.startswith(m + ".")}
            for m, targets in graph.items()}


def cycles_of(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, str] = {}
    cycles = []

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module `start` imports, directly or through others, with one chain of imports that gets there."""
    chains, todo = {start: [start]}, [start]
    while todo:
        node = todo.pop()
        for target in sorted(graph.get(node, ())):
            if target not in chains:
                chains[target] = chains[node] + [target]
                todo.append(target)
    return chains


def layer_of(module: str, layers: tuple[str, ...]) -> int | None:
    """Index of the layer `module` belongs to (its longest matching prefix), None when in none."""
    matches = [i for i, layer in enumerate(layers) if module == layer or module.startswith(layer + ".")]
    return max(matches, key=lambda i: len(layers[i])) if matches else None


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    """Chains of imports by which a module of one layer reaches a module of a later layer."""
    found = []
    for module in sorted(graph):
        own = layer_of(module, layers)
        if own is None:
            continue
        for target, chain in reachable(graph, module).items():
            other = layer_of(target, layers)
            if other is not None and other > own:
                found.append(" -> ".join(chain))
    return found


def test_no_module_of_the_library_imports_itself_back_through_others():
    assert cycles_of(import_graph()) == []


def test_no_package_imports_itself_back_through_another():
    """Packages as units (each module at the root of retrieval/ its own unit): no cycle between them either."""
    def unit(module):
        for package in (*LIBRARY_LAYERS, "retrieval.queries", "ui"):
            if module.startswith(package + ".") or module == package:
                return package
        return module

    units: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        units.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    assert cycles_of(units) == []


def test_each_library_package_imports_only_the_layers_below_it():
    """Embedders never import training or evaluation; evaluation never imports training (not even through the
    modules at the root of retrieval/)."""
    assert upward_imports(import_graph(), LIBRARY_LAYERS) == []


def test_the_library_never_imports_the_ui_or_the_app():
    assert upward_imports(import_graph(), PROGRAM_LAYERS) == []


def test_the_layer_rules_catch_an_upward_import_even_through_a_shared_module():
    graph = {"retrieval.embedders.x": {"retrieval.images"}, "retrieval.images": {"retrieval.training.y"},
             "retrieval.training.y": {"retrieval.embedders.x"}}
    assert upward_imports(graph, LIBRARY_LAYERS) == [
        "retrieval.embedders.x -> retrieval.images -> retrieval.training.y"]
    assert cycles_of(graph) == [["retrieval.embedders.x", "retrieval.images", "retrieval.training.y",
                                 "retrieval.embedders.x"]]
    assert upward_imports({"retrieval.search": {"ui.links"}, "ui.links": set()}, PROGRAM_LAYERS) == [
        "retrieval.search -> ui.links"]


def test_the_public_api_is_small_and_every_name_exists():
    assert 5 <= len(retrieval.__all__) <= 8
    for name in retrieval.__all__:
        assert getattr(retrieval, name) is not None
    try:
        retrieval.load_collection
    except AttributeError as error:
        assert "public names" in str(error)
    else:
        raise AssertionError("an advertised-but-missing name must not resolve")


def test_the_app_imports_only_public_names_of_the_library():
    """From `retrieval` its public API; from a module of it (the owner of a constant such as K_DEFAULT) only what
    that module exports."""
    import importlib

    tree = ast.parse((REPO / "app.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("retrieval"):
            module = importlib.import_module(node.module)
            exported = getattr(module, "__all__", None) or [name for name in vars(module) if not name.startswith("_")]
            assert {alias.name for alias in node.names} <= set(exported), f"app.py imports {node.module} internals"
        if isinstance(node, ast.Import):
            assert not any(alias.name.startswith("retrieval.") for alias in node.names)


def test_only_the_settings_module_reads_xray_variables():
    readers = []
    for path in [*PACKAGE.rglob("*.py"), REPO / "app.py"]:
        text = path.read_text()
        if re.search(r"(environ|getenv)[^\n]*XRAY_", text) and path.name != "settings.py":
            readers.append(path.name)
    assert readers == []


def test_every_setting_is_documented_in_the_readme():
    from retrieval.settings import VARIABLES

    readme = (REPO / "README.md").read_text()
    assert [name for name in VARIABLES if f"`{name}`" not in readme] == []


def test_no_module_but_the_layout_joins_paths_inside_a_generation():
    pattern = re.compile(r"""(generation|gen)\s*/\s*["'](dataset|faiss|models|manifest|evaluation)""")
    offenders = [p.name for p in [*PACKAGE.rglob("*.py"), REPO / "app.py"]
                 if p.name != "layout.py" and pattern.search(p.read_text())]
    assert offenders == []
