"""Architecture rules of the package, checked on its source (issue 18; docs/DESIGN.md "Layer contract").

The import-linter contract in pyproject.toml (run by scripts/test.sh) checks the one-way layers and
that there are no import cycles. These tests check what it cannot see, from the syntax tree of every
module in ``src/starlabels`` (imports inside functions and multi-line import lists included):

- no private name of one module imported (or reached as ``module._name``) by another;
- no single-letter import aliases (``F`` was the flags module in one file and
  ``torch.nn.functional`` in the next);
- no module over :data:`MAX_LINES` lines unless its docstring says why it is one unit, with the
  phrase :data:`SIZE_REASON` ("Kept as one module because ...");
- no guard against the package's own modules being absent (``pytest.importorskip("starlabels…")``,
  ``find_spec("starlabels…")``, ``try: import starlabels… except ImportError``): an import
  regression must fail, not skip;
- no development paths in the installed package: no ``../shared`` and no ``__file__``-relative path
  that climbs out of the package (``parents[k]``, ``.parent`` chains, ``os.path.dirname``);
- no change to the process's warnings filters (``warnings.catch_warnings``, ``simplefilter``,
  ``filterwarnings``, ``resetwarnings``) outside ``cli/``, which owns its process: the filter list is
  process-wide and ``catch_warnings`` swaps it for every thread.

Each checker is a function of a source string, and each is shown to catch a small bad example.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "starlabels"
TESTS_DIR = ROOT / "tests"
PACKAGE = "starlabels"

#: Longest module (physical lines) that needs no stated reason.
MAX_LINES = 500
#: The phrase a longer module's docstring uses to say why it is one unit.
SIZE_REASON = "Kept as one module because"

#: Exceptions raised when a module is absent.
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


# ---------------------------------------------------------------------------------------------
# helpers


def source_files(folder: Path) -> list[Path]:
    """Every ``.py`` file under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """Dotted module name of ``path`` inside ``package_dir`` (a package's ``__init__`` is the package)."""
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package_module(module: str, package_dir: Path = PACKAGE_DIR) -> bool:
    """Whether the dotted ``module`` exists as a file or a package under ``package_dir``."""
    parts = module.split(".")
    if parts[0] != package_dir.name:
        return False
    base = package_dir.joinpath(*parts[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def is_private(name: str) -> bool:
    """A leading underscore, but not a dunder (``__version__`` is public)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def resolve_from(node: ast.ImportFrom, module: str, is_init: bool) -> str:
    """The absolute module a ``from ... import`` statement in ``module`` reads from."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_init else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def private_module_allowed(target: str, importer: str) -> bool:
    """A private module (``pkg._mod``) may be imported from anywhere inside ``pkg``."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if is_private(part):
            parent = ".".join(parts[:i])
            if not (importer == parent or importer.startswith(parent + ".")):
                return False
    return True


def docstring_ranges(tree: ast.AST) -> set[int]:
    """``id`` of every docstring constant (module, class and function docstrings)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                ids.add(id(body[0].value))
    return ids


# ---------------------------------------------------------------------------------------------
# checkers: each takes a module's source and returns its violations as "line N: ..." strings


def private_cross_imports(source: str, module: str, is_init: bool = False,
                          package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Private names of another package module imported, or read as ``module._name``, by ``module``."""
    tree = ast.parse(source)
    found = []
    bound: dict[str, str] = {}  # local name -> package module it refers to
    root = package_dir.name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = resolve_from(node, module, is_init)
            if target != root and not target.startswith(root + "."):
                continue
            if not private_module_allowed(target, module):
                found.append(f"line {node.lineno}: from {target} import … (private module)")
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if is_package_module(full, package_dir):
                    bound[alias.asname or alias.name] = full
                    if not private_module_allowed(full, module):
                        found.append(f"line {node.lineno}: from {target} import {alias.name} "
                                     "(private module)")
                elif is_private(alias.name) and target != module:
                    found.append(f"line {node.lineno}: from {target} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name != root and not alias.name.startswith(root + "."):
                    continue
                if not private_module_allowed(alias.name, module):
                    found.append(f"line {node.lineno}: import {alias.name} (private module)")
                if alias.asname:
                    bound[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr) and isinstance(node.value, ast.Name):
            target = bound.get(node.value.id)
            if target is not None and target != module:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr} (private name of {target})")
    return sorted(set(found), key=lambda s: int(s.split()[1].rstrip(":")))


def single_letter_aliases(source: str) -> list[str]:
    """Imports bound to a one-letter name (``import torch.nn.functional as F``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.asname is not None and len(alias.asname) == 1:
                    found.append(f"line {node.lineno}: {alias.name} as {alias.asname}")
    return found


def oversized_without_reason(source: str, max_lines: int = MAX_LINES) -> list[str]:
    """The module, if it is longer than ``max_lines`` and its docstring does not state why."""
    n_lines = len(source.splitlines())
    if n_lines <= max_lines:
        return []
    doc = ast.get_docstring(ast.parse(source)) or ""
    if SIZE_REASON.lower() in " ".join(doc.split()).lower():
        return []
    return [f"{n_lines} lines (> {max_lines}) and no '{SIZE_REASON} …' in the module docstring"]


def _own_module_string(node: ast.AST) -> str | None:
    """The string of a literal naming one of the package's modules, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and (node.value == PACKAGE or node.value.startswith(PACKAGE + ".")):
        return node.value
    return None


def _imports_own_module(statements: list[ast.stmt]) -> bool:
    for stmt in statements:
        for node in ast.walk(stmt):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                return True
            if isinstance(node, ast.Import) and any(
                    a.name == PACKAGE or a.name.startswith(PACKAGE + ".") for a in node.names):
                return True
    return False


def own_module_guards(source: str) -> list[str]:
    """Guards against the package's own modules being absent (they turn a regression into a skip)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            target = _own_module_string(node.args[0])
            if name in ("importorskip", "find_spec") and target is not None:
                found.append(f"line {node.lineno}: {name}({target!r})")
        elif isinstance(node, ast.Try) and _imports_own_module(node.body):
            for handler in node.handlers:
                types = handler.type
                names = {getattr(t, "id", None) for t in
                         (types.elts if isinstance(types, ast.Tuple) else [types])} if types else {None}
                if names & (IMPORT_ERRORS | {None}):
                    found.append(f"line {node.lineno}: try: import {PACKAGE}… except ImportError")
    return found


def _levels_up(node: ast.AST) -> int | None:
    """How many folders above ``__file__``'s own file ``node`` points (None: not such a path)."""
    if isinstance(node, ast.Name):
        return 0 if node.id == "__file__" else None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = _levels_up(node.value)
        return None if inner is None else inner + 1
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
            and node.value.attr == "parents":
        inner = _levels_up(node.value.value)
        index = node.slice
        if inner is None or not (isinstance(index, ast.Constant) and isinstance(index.value, int)):
            return None
        return inner + index.value + 1
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("resolve", "absolute") and isinstance(func, ast.Attribute) and not node.args:
            return _levels_up(func.value)
        if name in ("Path", "PurePath", "abspath", "realpath") and len(node.args) == 1:
            return _levels_up(node.args[0])
        if name == "dirname" and len(node.args) == 1:
            inner = _levels_up(node.args[0])
            return None if inner is None else inner + 1
    return None


def development_paths(source: str, depth: int) -> list[str]:
    """Paths into the development checkout in a module ``depth`` folders below the package root
    (``starlabels/x.py``: 1, ``starlabels/io/x.py``: 2): ``../shared`` in a string that is not a
    docstring, and ``__file__``-relative paths that climb above the package folder."""
    tree = ast.parse(source)
    docs = docstring_ranges(tree)
    found = set()
    climbs: dict[int, int] = {}  # line -> farthest climb (the outermost expression of a chain)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                and ("../shared" in node.value or "..\\shared" in node.value):
            found.add(f"line {node.lineno}: '../shared' in a string")
        up = _levels_up(node) if isinstance(node, ast.Attribute | ast.Subscript | ast.Call) else None
        if up is not None and up > depth:
            climbs[node.lineno] = max(up, climbs.get(node.lineno, 0))
    found |= {f"line {line}: __file__ path {up} folders up leaves the package" for line, up in climbs.items()}
    return sorted(found, key=lambda s: int(s.split()[1].rstrip(":")))


#: The warnings module's functions that change the process's filter list.
WARNINGS_FILTER_CALLS = frozenset({"catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"})


def warnings_filter_changes(source: str) -> list[str]:
    """Calls that change the process's warnings filters: ``warnings.<name>(…)``, or ``<name>(…)``
    after ``from warnings import <name>`` (any alias), for the names in
    :data:`WARNINGS_FILTER_CALLS`."""
    tree = ast.parse(source)
    aliases = {alias.asname or alias.name: alias.name for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module == "warnings"
               for alias in node.names if alias.name in WARNINGS_FILTER_CALLS}
    modules = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if alias.name == "warnings"}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id in modules and func.attr in WARNINGS_FILTER_CALLS:
            found.append(f"line {node.lineno}: warnings.{func.attr}")
        elif isinstance(func, ast.Name) and func.id in aliases:
            found.append(f"line {node.lineno}: warnings.{aliases[func.id]}")
    return found


def _module_path_strings(tree: ast.AST, root: str) -> list[ast.Constant]:
    """String literals used as import targets: arguments of ``import_module``/``find_spec``, values
    of dict literals whose values are all dotted ``root.…`` paths (lazy-export maps, registries), and
    ``"root.module:Name"`` strings. (Other strings, e.g. provenance naming a class, are prose.)"""

    def dotted(node: ast.AST) -> bool:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            return False
        parts = node.value.split(":")[0].split(".")
        return parts[0] == root and len(parts) >= 2 and all(p.isidentifier() for p in parts) \
            and node.value.count(":") <= 1

    found: dict[int, ast.Constant] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "find_spec") and node.args and dotted(node.args[0]):
                found[id(node.args[0])] = node.args[0]
        elif isinstance(node, ast.Dict) and node.values and all(dotted(v) for v in node.values):
            found.update((id(v), v) for v in node.values)
        elif dotted(node) and ":" in node.value:
            found[id(node)] = node
    return sorted(found.values(), key=lambda n: (n.lineno, n.col_offset))


def dynamic_imports_outside_package(source: str, module: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Module paths used as import targets in strings (see :func:`_module_path_strings`) that name a
    module missing from the package, or one outside the importing module's own top-level package.
    lint-imports cannot see these imports, so they stay inside one layer; only the root
    ``starlabels/__init__.py`` (the lazy public API) may name any."""
    root = package_dir.name
    own = ".".join(module.split(".")[:2])
    found = []
    for node in _module_path_strings(ast.parse(source), root):
        target = node.value.split(":")[0]
        if not is_package_module(target, package_dir):
            found.append(f"line {node.lineno}: {node.value!r} names no module of the package")
        elif module != root and target != own and not target.startswith(own + "."):
            found.append(f"line {node.lineno}: {node.value!r} is outside {own}")
    return found


# ---------------------------------------------------------------------------------------------
# the rules on the package


SRC_FILES = source_files(PACKAGE_DIR)
TEST_FILES = source_files(TESTS_DIR)


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_source_tree_is_found():
    assert len(SRC_FILES) > 50 and (PACKAGE_DIR / "__init__.py") in SRC_FILES
    assert Path(__file__).resolve() in TEST_FILES


def _violations(check, files, **kwargs) -> dict[str, list[str]]:
    out = {}
    for path in files:
        found = check(path.read_text(encoding="utf-8"), **{k: v(path) for k, v in kwargs.items()})
        if found:
            out[str(path.relative_to(ROOT))] = found
    return out


def test_no_private_cross_module_imports():
    bad = _violations(private_cross_imports, SRC_FILES, module=module_name,
                      is_init=lambda p: p.name == "__init__.py")
    assert not bad, "private names imported across modules (make them public in their module):\n" \
        + "\n".join(f"  {f}: {v}" for f, vs in bad.items() for v in vs)


def test_no_single_letter_import_aliases():
    bad = _violations(single_letter_aliases, SRC_FILES)
    assert not bad, "single-letter import aliases:\n" + "\n".join(
        f"  {f}: {v}" for f, vs in bad.items() for v in vs)


def test_no_module_over_max_lines_without_reason():
    bad = _violations(oversized_without_reason, SRC_FILES)
    assert not bad, f"modules over {MAX_LINES} lines (split by responsibility, or say '{SIZE_REASON} …'):\n" \
        + "\n".join(f"  {f}: {v}" for f, vs in bad.items() for v in vs)


def test_no_guards_against_own_modules_missing():
    bad = _violations(own_module_guards, [p for p in SRC_FILES + TEST_FILES if p != Path(__file__).resolve()])
    assert not bad, "guards against the package's own modules being absent:\n" + "\n".join(
        f"  {f}: {v}" for f, vs in bad.items() for v in vs)


def test_no_development_paths_in_package():
    bad = _violations(development_paths, SRC_FILES,
                      depth=lambda p: len(p.relative_to(PACKAGE_DIR).parts))
    assert not bad, "development paths in the installed package:\n" + "\n".join(
        f"  {f}: {v}" for f, vs in bad.items() for v in vs)


def test_the_library_leaves_the_warnings_filters_alone():
    library = [p for p in SRC_FILES if p.relative_to(PACKAGE_DIR).parts[0] != "cli"]
    bad = _violations(warnings_filter_changes, library)
    assert not bad, "the library changes the process's warnings filters (cli/ may; the library may not):\n" \
        + "\n".join(f"  {f}: {v}" for f, vs in bad.items() for v in vs)


def test_dynamic_imports_stay_in_their_package():
    bad = _violations(dynamic_imports_outside_package, SRC_FILES, module=module_name)
    assert not bad, "module paths in strings (dynamic imports):\n" + "\n".join(
        f"  {f}: {v}" for f, vs in bad.items() for v in vs)


def test_every_public_name_of_every_package_resolves():
    """Lazy exports (``__all__`` served by ``__getattr__``) still point at the name's module after
    names move between modules."""
    packages = [module_name(p) for p in SRC_FILES if p.name == "__init__.py"]
    for package in packages:
        mod = importlib.import_module(package)
        for name in getattr(mod, "__all__", []):
            assert getattr(mod, name) is not None, f"{package}.{name}"


def _contract() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]


def test_layer_contract_covers_every_top_level_module():
    """A new subpackage or top-level module cannot escape the layers by not being listed."""
    contract = _contract()
    assert contract["root_package"] == PACKAGE
    (layers,) = [c for c in contract["contracts"] if c["type"] == "layers"]
    listed = {name.strip() for layer in layers["layers"] for name in layer.replace(":", "|").split("|")}
    present = {f"{PACKAGE}.{p.stem}" for p in PACKAGE_DIR.iterdir()
               if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    unlisted = {m for m in present - listed if not is_private(m.rsplit(".", 1)[1])}
    assert not unlisted, f"modules in no layer of [tool.importlinter]: {sorted(unlisted)}"
    assert not listed - present, f"layers name modules that do not exist: {sorted(listed - present)}"
    kinds = {c["type"] for c in contract["contracts"]}
    assert {"layers", "acyclic_siblings"} <= kinds


# ---------------------------------------------------------------------------------------------
# each checker catches a bad example and passes a good one


def test_private_import_checker_catches_bad_examples(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    for rel in ("__init__.py", "a.py", "_hidden.py", "sub/__init__.py", "sub/b.py", "sub/_inner.py"):
        (pkg / rel).write_text("")
    check = lambda src, mod="toy.sub.b", init=False: private_cross_imports(  # noqa: E731
        src, mod, init, package_dir=pkg)
    assert check("from toy.a import _helper\n") == ["line 1: from toy.a import _helper"]
    # inside a function, multi-line, relative
    src = "def f():\n    from toy.a import (\n        public,\n        _helper,\n    )\n"
    assert check(src) == ["line 2: from toy.a import _helper"]
    assert check("from ..a import _x\n") == ["line 1: from toy.a import _x"]
    assert check("from . import _inner\n") == []  # a private module of its own package
    assert check("from toy import _hidden\n") == []  # toy._hidden is private to toy; toy.sub.b is inside
    assert check("from toy.sub import _inner\n", mod="toy.a") == [
        "line 1: from toy.sub import _inner (private module)"]
    assert check("import toy.a as mod_a\nmod_a._helper()\n") == [
        "line 2: mod_a._helper (private name of toy.a)"]
    assert check("from toy import a\nx = a._cache\n") == ["line 2: a._cache (private name of toy.a)"]
    # allowed: public names, dunders, own private names, other packages' private names
    assert check("from toy.a import helper, __version__\n") == []
    assert check("from toy.sub.b import _mine\n") == []
    assert check("from numpy.linalg import _umath_linalg\n") == []
    assert check("from toy.sub import _inner\n", mod="toy.sub", init=True) == []


def test_single_letter_alias_checker_catches_bad_examples():
    assert single_letter_aliases("import torch.nn.functional as F\n") == [
        "line 1: torch.nn.functional as F"]
    src = "def f():\n    from starlabels.inference import (\n        flags as U,\n    )\n"
    assert single_letter_aliases(src) == ["line 2: flags as U"]
    assert single_letter_aliases("import numpy as np\nfrom torch.nn import functional\n") == []


def test_size_checker_catches_bad_examples():
    body = "x = 1\n" * 10
    assert oversized_without_reason('"""Short."""\n' + body, max_lines=5) == [
        f"11 lines (> 5) and no '{SIZE_REASON} …' in the module docstring"]
    assert oversized_without_reason("# " + SIZE_REASON + " a comment is not the docstring\n" + body,
                                    max_lines=5) != []
    reasoned = f'"""Thing.\n\n{SIZE_REASON.replace(" one ", chr(10) + "one ")} it is one algorithm."""\n'
    assert oversized_without_reason(reasoned + body, max_lines=5) == []
    assert oversized_without_reason('"""Short."""\n' + body, max_lines=11) == []


def test_warnings_filter_checker_catches_bad_examples():
    assert warnings_filter_changes("import warnings\nwith warnings.catch_warnings():\n    pass\n") == [
        "line 2: warnings.catch_warnings"]
    assert warnings_filter_changes("import warnings as w\nw.simplefilter('ignore')\n") == [
        "line 2: warnings.simplefilter"]
    src = "def f():\n    from warnings import filterwarnings as fw\n    fw('ignore')\n"
    assert warnings_filter_changes(src) == ["line 3: warnings.filterwarnings"]
    # warning (not filtering) is fine, as is another module's function of the same name
    assert warnings_filter_changes("import warnings\nwarnings.warn('careful', stacklevel=2)\n") == []
    assert warnings_filter_changes("import numpy as np\nwith np.errstate(all='ignore'):\n    pass\n") == []
    assert warnings_filter_changes("import pytest\npytest.simplefilter('x')\n") == []


def test_guard_checker_catches_bad_examples():
    assert own_module_guards('young = pytest.importorskip("starlabels.labels.young")\n') == [
        "line 1: importorskip('starlabels.labels.young')"]
    src = 'import importlib.util\nok = importlib.util.find_spec("starlabels.cli.fit")\n'
    assert own_module_guards(src) == ["line 2: find_spec('starlabels.cli.fit')"]
    src = "try:\n    from starlabels.io import read\nexcept ImportError:\n    read = None\n"
    assert own_module_guards(src) == ["line 1: try: import starlabels… except ImportError"]
    # other packages may be optional
    assert own_module_guards('dist = pytest.importorskip("distributed")\n') == []
    assert own_module_guards("try:\n    import astroNN\nexcept ImportError:\n    astroNN = None\n") == []
    assert own_module_guards("try:\n    from starlabels.io import read\nexcept OSError:\n    pass\n") == []


@pytest.mark.parametrize(("source", "depth", "expected"), [
    ('ROOT = Path(__file__).resolve().parents[3].parent / "shared"\n', 2,
     ["line 1: __file__ path 5 folders up leaves the package"]),
    ("ROOT = Path(__file__).parent.parent.parent\n", 2,
     ["line 1: __file__ path 3 folders up leaves the package"]),
    ("ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))\n", 1,
     ["line 1: __file__ path 2 folders up leaves the package"]),
    ('DATA = "../shared/data"\n', 1, ["line 1: '../shared' in a string"]),
    # inside the package: allowed
    ('RES = Path(__file__).resolve().parents[1] / "resources"\n', 2, []),
    ('RES = Path(__file__).parent / "resources"\n', 1, []),
    ('"""Reads ../shared/data when told to (a docstring may say so)."""\n', 1, []),
])
def test_development_path_checker_catches_bad_examples(source, depth, expected):
    assert development_paths(source, depth) == expected


def test_dynamic_import_checker_catches_bad_examples(tmp_path):
    pkg = tmp_path / "toy"
    for rel in ("__init__.py", "low/__init__.py", "low/a.py", "high/__init__.py", "high/b.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text("")
    check = lambda src, mod: dynamic_imports_outside_package(src, mod, package_dir=pkg)  # noqa: E731
    assert check('_LAZY = {"thing": "toy.high.b"}\n', "toy.low") == [
        "line 1: 'toy.high.b' is outside toy.low"]
    assert check('M = {"x": "toy.low.gone:Model"}\n', "toy.low.a") == [
        "line 1: 'toy.low.gone:Model' names no module of the package"]
    assert check('_LAZY = {"thing": "toy.low.a", "m": "toy.low.a:Model"}\n', "toy.low") == []
    assert check('_LAZY = {"thing": "toy.high.b"}\n', "toy") == []  # the root's lazy public API
    assert check('msg = "see toy.high.b.fit for details"\n', "toy.low.a") == []  # prose, not a path
    assert check('info = {"trainer": "toy.high.Trainer", "n": 3}\n', "toy.low.a") == []  # provenance
    assert check('importlib.import_module("toy.high.b")\n', "toy.low.a") == [
        "line 1: 'toy.high.b' is outside toy.low"]
    assert check('importlib.import_module("toy.low.missing")\n', "toy.low.a") == [
        "line 1: 'toy.low.missing' names no module of the package"]


def test_lint_imports_catches_imports_inside_functions_and_type_checking(tmp_path):
    """The layer contract counts every import statement (DESIGN.md, "Layer contract"): a lower layer
    importing a higher one inside a function or under TYPE_CHECKING fails lint-imports."""
    import subprocess

    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.is_file():  # pragma: no cover - the dev extra installs it
        pytest.fail(f"{lint} is missing: install the dev extra (pip install -e '.[dev]')")
    config = tmp_path / "contract.toml"
    config.write_text('[tool.importlinter]\nroot_package = "toy"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "layers"\ntype = "layers"\nlayers = ["toy.high", "toy.low"]\n')
    bad_bodies = {
        "function": "def f():\n    from toy.high import thing\n    return thing\n",
        "type_checking": "from typing import TYPE_CHECKING\n"
                         "if TYPE_CHECKING:\n    from toy.high import thing\n",
    }
    for kind, body in [*bad_bodies.items(), ("none", "VALUE = 1\n")]:
        pkg = tmp_path / kind / "toy"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "high.py").write_text("from toy.low import VALUE\nthing = VALUE\n")
        (pkg / "low.py").write_text(body if kind == "none" else "VALUE = 1\n" + body)
        result = subprocess.run([str(lint), "--no-cache", "--config", str(config)], cwd=tmp_path / kind,
                                env={"PYTHONPATH": str(tmp_path / kind), "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True)
        if kind == "none":
            assert result.returncode == 0, result.stdout + result.stderr
        else:
            assert result.returncode == 1, (kind, result.stdout + result.stderr)
            assert "toy.low -> toy.high" in result.stdout, result.stdout
