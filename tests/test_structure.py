"""The library's shape: a small public API, no import cycles, one reader of the environment, one owner of
an index's layout."""

import ast
import re
from pathlib import Path

import retrieval
from conftest import REPO

PACKAGE = REPO / "retrieval"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that `path` imports anywhere (top level or inside functions)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
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


def test_no_module_of_the_library_imports_itself_back_through_others():
    files = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imports_of(p, modules) for p in files}
    # A package's __init__ importing its submodules is how Python packages work; a cycle is anything else.
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    state: dict[str, str] = {}
    cycles = []

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


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
