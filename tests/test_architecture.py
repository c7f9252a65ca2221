"""The layout's rules, checked on the source: no import cycle inside app/, small modules outside the
core, thin routes (no torch, no app.state), one router list, and `--help` without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
MAX_LINES = 400
ROUTE_FILES = ("api.py", "pages.py", "socket.py")


def _modules() -> dict[str, Path]:
    mods = {}
    for p in APP.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(path: Path, modules: dict[str, Path], *, module_level_only: bool) -> set[str]:
    """The app modules that ``path`` imports (``from app.x import y`` counts app.x.y when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("app")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("app"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)  # type: ignore[arg-type]
    return {m for m in out if m in modules}


def test_no_import_cycle_inside_app() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules, module_level_only=False) - {m} for m, p in modules.items()}
    # a package's __init__ is imported with any of its modules: count that edge too
    for m in list(graph):
        parent = m.rsplit(".", 1)[0]
        if parent in graph and parent != m:
            graph[m].add(parent)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_modules_outside_the_core_are_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in APP.rglob("*.py")
           if "core" not in p.relative_to(APP).parts[:1] and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_module_says_what_it_is_for() -> None:
    missing = [str(p.relative_to(ROOT)) for p in APP.rglob("*.py")
               if p.name != "__init__.py" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing


def test_routes_are_thin_no_torch_no_app_state() -> None:
    bad = []
    for p in (APP / "features").rglob("*.py"):
        text = p.read_text()
        if p.name in ROUTE_FILES:
            tree = ast.parse(text)
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "torch" or n.startswith("torch.") for n in names):
                    bad.append(f"{p.relative_to(ROOT)} imports torch")
        if ".app.state" in text or "app.state." in text:
            bad.append(f"{p.relative_to(ROOT)} reaches into app.state (use app.deps)")
    assert not bad, bad


def test_one_router_list_and_one_lifespan() -> None:
    """Routers are included in one place (app.main, from app.routers.ROUTERS); nothing wraps a lifespan."""
    for p in APP.rglob("*.py"):
        text = p.read_text()
        rel = str(p.relative_to(ROOT))
        if "include_router(" in text:
            assert rel == "app/main.py", f"{rel} includes routers: add them to app/routers.py"
        assert "lifespan_context" not in text, f"{rel} wraps a lifespan: use app/lifespan.py"
    from app.main import create_app
    from app.routers import ROUTERS

    assert len({id(r) for r in ROUTERS}) == len(ROUTERS)
    included = [getattr(r, "original_router", None) for r in create_app().routes]
    assert [r for r in included if r is not None] == ROUTERS, "app.main includes exactly ROUTERS, in order"


def test_cli_help_and_version_answer_without_importing_torch() -> None:
    code = ("import sys; from app.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False") and "serve" in out.stdout and "index" in out.stdout
    out = subprocess.run([sys.executable, "-m", "app.cli", "--version"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.startswith("convscope ")
