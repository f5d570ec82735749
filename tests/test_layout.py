"""The layout keeps its promises, checked on the tree: the host/device line, one place per backend, small modules."""

import ast
from pathlib import Path

import pytest

from mait_deploy import backends
from mait_deploy.device.runner import runner_class
from mait_deploy.host import catalog

PACKAGE = Path(__file__).resolve().parent.parent / "mait_deploy"
MAX_LINES = 400
# Calls whose string arguments are module or pip-extra names, not backend names.
MODULE_NAME_CALLS = {"require", "is_available", "import_module", "package_versions"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def side(module: str) -> str:
    """'host', 'device' (numpy + one runtime, common modules included) or 'cli'."""
    parts = module.split(".")
    if parts[1:2] == ["host"] or (parts[1:2] == ["backends"] and parts[-1] == "target"):
        return "host"
    if parts[1:2] == ["cli"] or (parts[1:2] == ["backends"] and parts[-1] == "cli"):
        return "cli"
    return "device"


def _executed_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                continue
            stack.append(child)


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    found = set()
    for node in _executed_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_module_is_over_the_size_limit():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_device_side_never_imports_host_side():
    known = modules()
    broken = []
    for name, path in known.items():
        if side(name) != "device":
            continue
        for imported in imports(path):
            if imported in known and side(imported) == "host":
                broken.append(f"{name} imports {imported}")
    assert not broken, broken


def test_the_classification_sees_both_sides():
    sides = {side(name) for name in modules()}
    assert sides == {"host", "device", "cli"}
    assert side("mait_deploy.backends.onnxruntime.target") == "host"
    assert side("mait_deploy.backends.onnxruntime.runner") == "device"


def _backend_names_in(path: Path, names: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    allowed = set()  # string nodes that are module/extra names or docstrings
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = getattr(func, "id", None) or getattr(func, "attr", None)
            if called in MODULE_NAME_CALLS:
                allowed.update(id(arg) for arg in node.args)
            allowed.update(id(k.value) for k in node.keywords if k.arg == "extra")
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            allowed.add(id(node.body[0].value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed \
                and node.value in names:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    for imported in imports(path):
        if any(imported.startswith(f"mait_deploy.backends.{name}") for name in names):
            found.append(f"{path.relative_to(PACKAGE.parent)} imports {imported}")
    return found


def test_no_module_outside_a_backend_names_one():
    names = set(backends.names())
    offenders = []
    for name, path in modules().items():
        parts = name.split(".")
        if parts[1:2] == ["backends"] and (len(parts) == 2 or parts[2] in names):
            continue  # the registry and the backends' own files
        offenders += _backend_names_in(path, names)
    assert not offenders, offenders


@pytest.mark.parametrize("name", backends.names())
def test_each_backend_declares_itself_and_its_parts_load(name):
    backend = backends.get(name)
    assert backend.name == name and backend.device.extra and backend.host.extra
    assert backend.gates_with in backends.names()
    assert runner_class(name).__name__.endswith("Runner")
    if not backend.missing_on_host():
        assert catalog.target(name).name == name


def _definitions(name: str) -> list[str]:
    """Modules of the package that define a function or class called ``name``."""
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                found.append(module)
    return found


def test_compile_never_imports_deploy():
    known = modules()
    broken = [f"{name} imports {imported}" for name, path in known.items()
              if name.startswith("mait_deploy.host.compile") for imported in imports(path)
              if imported.startswith("mait_deploy.host.deploy")]
    assert not broken, broken


def test_the_fp32_rule_and_the_timing_loop_are_defined_once():
    # The rule "a reduced precision only where it beats its own FP32" and the side-by-side loop, each in one place.
    assert _definitions("faster_than_fp32") == ["mait_deploy.recommendation"]
    assert _definitions("recommend") == ["mait_deploy.recommendation"]
    assert _definitions("side_by_side") == ["mait_deploy.device.profiling.side_by_side"]
    assert _definitions("time_bundles") == ["mait_deploy.device.profiling.side_by_side"]
    # The interval a decision rests on and the tie-break where it cannot decide: one of each.
    assert _definitions("median_interval") == ["mait_deploy.device.profiling.side_by_side"]
    assert _definitions("tie_break_key") == ["mait_deploy.recommendation"]
    assert _definitions("separated") == ["mait_deploy.recommendation"]
    # Every module that compares a precision with FP32 by speed goes through the rule.
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "recommendation.py":
            assert ">= p50[fp32]" not in text and "faster_than_fp32(" not in text, path
        if path.name != "side_by_side.py":
            assert "perf_counter_ns() < settled" not in text, path


def _result_classes() -> list[str]:
    """Dataclasses of the package with a target, a precision and a status: a result of a bundle's run."""
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                fields = {item.target.id for item in node.body
                          if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
                if {"target", "precision", "status"} <= fields:
                    found.append(f"{module}.{node.name}")
    return found


def test_one_result_one_front_one_buildable_here():
    # Every row of every report is a BundleRun; the Pareto front and "can this machine build it" are written once.
    assert _result_classes() == ["mait_deploy.results.BundleRun"]
    assert _definitions("Row") == []
    assert _definitions("pareto_front") == ["mait_deploy.results"]
    assert _definitions("cannot_build_here") == ["mait_deploy.host.compile.target"]
    for module, path in modules().items():  # nobody else asks the target's precisions or hardware directly
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "hardware_lacks":
                assert module == "mait_deploy.host.compile.target", f"{module} calls hardware_lacks"


@pytest.mark.parametrize("name", backends.names())
def test_a_backends_name_is_written_once_in_the_registry(name):
    # Target.name and Runner.runtime_name come from the registry; no class restates them.
    runner = runner_class(name)
    assert "runtime_name" not in vars(runner) and backends.name_of(runner) == name
    if not backends.get(name).missing_on_host():
        target = catalog.target(name)
        assert "name" not in vars(type(target)) and target.name == name


def _precision_literals(tree: ast.AST) -> list[int]:
    """Lines where a precision is written as a bare string: compared with something called ``precision``,
    passed as ``precision=``, or stored under a ``"precision"`` key."""
    from mait_deploy.precision import PRECISIONS

    def is_precision(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "precision" or \
            isinstance(node, ast.Name) and node.id == "precision"

    def literal(node: ast.AST | None) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(literal(element) for element in node.elts)
        return isinstance(node, ast.Constant) and node.value in PRECISIONS

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(map(is_precision, sides)) and any(map(literal, sides)):
                lines.append(node.lineno)
        elif isinstance(node, ast.keyword) and node.arg == "precision" and literal(node.value):
            lines.append(node.value.lineno)
        elif isinstance(node, ast.Dict):
            lines += [v.lineno for k, v in zip(node.keys, node.values)
                      if isinstance(k, ast.Constant) and k.value == "precision" and literal(v)]
    return lines


def test_precisions_are_defined_once():
    """Precisions are named by mait_deploy.precision's constants (FP32, FP16, BF16, INT8), never as bare strings
    the code compares or passes a precision with (parsed, so a rename cannot slip past)."""
    offenders = [f"{module}:{line}" for module, path in modules().items() if module != "mait_deploy.precision"
                 for line in _precision_literals(ast.parse(path.read_text()))]
    assert not offenders, offenders
    planted = ast.parse('if options.precision == "int8":\n    f(precision="fp16", x={"precision": ("bf16",)})')
    assert _precision_literals(planted) == [1, 2, 2]  # the check finds what it is for


def test_a_plug_in_backends_native_runner_is_in_its_own_folder():
    """A backend that brings a native runner backend keeps it in its folder (native/backend.cpp + find.cmake);
    the native runner's own sources never name it, and `mait-deploy app` and `remote --native` ship it."""
    from mait_deploy.device.native_app import NATIVE_SOURCES, native_items

    plug_ins = [name for name in backends.names() if backends.native_folder(name) is not None]
    # Every runtime the native runner runs keeps its native code in its own folder: none is built in.
    assert plug_ins == [name for name in backends.names() if backends.get(name).native.sdk]
    assert set(plug_ins) == {"onnxruntime", "openvino", "litert", "executorch"}
    shared = [path for path in NATIVE_SOURCES.rglob("*") if path.is_file()]
    for name in plug_ins:
        folder = backends.native_folder(name)
        assert folder == PACKAGE / "backends" / name / "native"
        assert {p.name for p in folder.iterdir() if p.is_file()} >= {"backend.cpp", "find.cmake"}
        assert backends.get(name).native.sdk, f"{name} brings a native backend but does not say where its SDK is"
        assert native_items()[f"backends/{name}"] == folder
        naming = [str(path.relative_to(PACKAGE)) for path in shared if name in path.read_text(errors="ignore").lower()]
        assert not naming, f"the native runner's shared sources name the plug-in {name}: {naming}"


def test_every_package_folder_is_named_in_the_architecture_doc():
    """docs/architecture.md's layout names each package folder (a backend's through ``backends/<name>/``)."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    package = PACKAGE
    missing = []
    for init in sorted(package.rglob("__init__.py")):
        folder = init.parent.relative_to(package).as_posix()
        if folder == "." or (folder.startswith("backends/") and folder.count("/") == 1):
            continue
        if f"{folder}/" not in doc:
            missing.append(folder)
    assert "backends/<name>/" in doc
    assert not missing, f"package folders docs/architecture.md does not name: {missing}"


def test_the_import_graph_has_no_circle():
    """No module of the package imports, directly or through others, a module that imports it back (imports inside
    functions included: a lazy import hides a circle, it does not end it). The registry is the ground floor."""
    known = modules()
    graph = {name: sorted(i for i in imports(path) if i in known and i != name and i != "mait_deploy")
             for name, path in known.items()}
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in graph[module]:
            if state.get(imported) == "open":
                circles.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(" -> ".join(circle) for circle in circles)
    registry = imports(known["mait_deploy.backends"])
    assert not [m for m in registry if m.startswith(("mait_deploy.host", "mait_deploy.device"))]
