"""The import graph: no module imports one that imports it back, the env side stays light, and
every name an annotation uses is imported or defined.

Every module of ``irlm_env`` and ``irlm_agents`` is parsed with ``ast`` and every import in it
counts, at module level, inside functions and under ``TYPE_CHECKING`` alike: a cycle kept
alive by a function-level import is still a cycle in the design. ``from a import b`` is an
edge to ``a.b`` when that is a module and to ``a`` otherwise. The implicit import of parent
packages is not an edge (as in import-linter), or any package whose ``__init__`` re-exports
would be a cycle with its own submodules.
"""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"irlm_env": ROOT / "irlm_env", "irlm_agents": ROOT / "agents"}
#: What the env side must never import: the learning side and its heavy dependencies.
FORBIDDEN_IN_ENV = ("irlm_agents", "torch", "stable_baselines3")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, internal or not (the top-level name for external ones)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in MODULES and "." in target and target.split(".")[0] in PACKAGES:
                target = target.rpartition(".")[0]
            found.add(target if target in MODULES else target.split(".")[0])
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]], nodes: set[str]) -> list[str] | None:
    """One import cycle among ``nodes`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, set()) & nodes):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(nodes):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    """The checker itself must be able to fail: a hidden cycle in a scratch graph is found."""
    assert "irlm_env.plugins" in GRAPH["irlm_env.rewards.registry"]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph, set(graph)) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}, {"a", "b"}) is None


def test_no_import_cycle_in_irlm_env() -> None:
    nodes = {name for name in MODULES if name.startswith("irlm_env")}
    cycle = find_cycle(GRAPH, nodes)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_across_both_packages() -> None:
    cycle = find_cycle(GRAPH, set(MODULES))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("irlm_env")))
def test_the_env_side_never_imports_the_learning_side(name: str) -> None:
    bad = sorted(t for t in GRAPH[name] if t.split(".")[0] in FORBIDDEN_IN_ENV)
    assert not bad, f"{name} imports {', '.join(bad)}"


def test_making_envs_loads_no_torch_and_no_sb3() -> None:
    script = textwrap.dedent(
        """
        import sys
        import gymnasium as gym
        import irlm_env

        env = gym.make("irlm/NextWord-v0", corpus="grammar")
        env.reset(seed=0)
        env.step(env.action_space.sample())
        envs = gym.make_vec("irlm/NextWord-v0", num_envs=4, corpus="grammar")
        envs.reset(seed=0)
        envs.step(envs.action_space.sample())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "stable_baselines3", "irlm_agents"))
        print(",".join(loaded))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"loaded: {result.stdout.strip()}"


def unbound_annotation_names(source: str) -> set[str]:
    """Names used in a module's annotations that the module never binds at its top level.

    With ``from __future__ import annotations`` an annotation is never evaluated, so one naming a
    class that was renamed or never imported runs fine and only misleads readers and type
    checkers; this finds it without importing anything.
    """
    tree = ast.parse(source)
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
    annotations: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                     *(a for a in (arguments.vararg, arguments.kwarg) if a is not None)]
            annotations += [a.annotation for a in every if a.annotation is not None]
            if node.returns is not None:
                annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
    used: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", getattr(node.value, "attr", "")) == "Literal":
            return  # its strings are values, not quoted names
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
            node = ast.parse(node.value, mode="eval").body
        if isinstance(node, ast.Name):
            used.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for annotation in annotations:
        visit(annotation)
    return used - bound


def test_the_annotation_check_can_fail() -> None:
    source = "from a import B, Literal\ndef f(x: B, y: 'C', m: Literal['m']) -> list[D]:\n    z: E = 1\n"
    assert unbound_annotation_names(source) == {"C", "D", "E"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_name_in_an_annotation_is_defined_or_imported(name: str) -> None:
    unbound = unbound_annotation_names(MODULES[name].read_text(encoding="utf-8"))
    assert not unbound, f"{name} annotates with {', '.join(sorted(unbound))}, which it never defines or imports"


def test_the_rllib_package_without_ray_names_the_extra_to_install() -> None:
    # Run in a fresh interpreter where ray cannot be found, whether or not this one has it.
    code = textwrap.dedent("""
        import importlib.util, sys
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "ray" else real(name, *a)
        from irlm_env.errors import IrlmError
        try:
            import irlm_agents.rllib.env
        except ImportError as error:  # feature detection sees an ImportError, the CLI an IrlmError
            print(isinstance(error, IrlmError), error)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("True irlm_agents.rllib needs Ray RLlib; install it with pip install 'irlm-env[rllib]'")
