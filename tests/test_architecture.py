"""The import rules of ARCHITECTURE.md, checked from the AST of every file in minipaas/ and tui/.

Layers (imports point down):

    cli (+ __main__)  →  server  →  deploy, api (+ client, other top-level modules)
      →  store, git, build, supervisor, router, logs, metrics, drains, postgres, redis  (the middle
         layer)
      →  errors, names, jsonin, paths, settings, models, sandbox, daemon  (the bottom layer)

Rules:
- only minipaas/store/ imports sqlite3 or aiosqlite; only minipaas/git/ imports dulwich;
- tui/ imports nothing from minipaas except minipaas.client (the API client contract);
  minipaas imports tui only in cli.py, and only inside a function (lazily);
- the middle-layer packages never import each other (supervisor may import logs, which owns
  the dyno log files it writes, and drains may import logs, whose lines it follows); everyone
  may import the bottom layer; the bottom layer and
  minipaas.client import only the bottom layer; nothing below imports deploy/api/server/cli;
- no I/O at import time: no module-level open(), subprocess.*, os.system, asyncio.run, …;
- no shell=True (nor os.system/os.popen) anywhere in minipaas/ or tui/.

A module that fits no layer (say minipaas/ssh.py) may import anything but server, cli and tui,
and only the layers above the middle one may import it. Packages that don't exist yet are
simply not checked.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

BOTTOM = frozenset(
    {"", "errors", "names", "jsonin", "paths", "settings", "models", "sandbox", "daemon"}
)
MIDDLE = frozenset(
    {"store", "git", "build", "supervisor", "router", "logs", "metrics", "drains", "postgres",
     "redis"}
)
MIDDLE_ALLOWED = frozenset({("supervisor", "logs"), ("drains", "logs")})
UPPER = frozenset({"deploy", "api"})
# Entry points: the `minipaas` command, and what its `ssh` subcommand (the forced command) runs.
ENTRY = frozenset({"cli", "__main__", "ssh"})
TOP = ENTRY | {"server"}
CLIENT = "client"

DB_MODULES = frozenset({"sqlite3", "aiosqlite"})
IO_CALLS = frozenset({"open", "io.open", "os.open", "builtins.open", "os.system", "os.popen"})
IO_CALL_PREFIXES = ("subprocess.", "os.exec", "os.spawn", "os.posix_spawn")
IO_METHODS = frozenset(
    {"read_text", "read_bytes", "write_text", "write_bytes", "mkdir", "touch", "unlink", "rmdir"}
)
IMPORT_TIME_RUNNERS = frozenset({"asyncio.run"})
SHELL_CALLS = frozenset({"os.system", "os.popen"})


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted module name, best effort ("minipaas.store.queries")
    line: int
    in_function: bool  # False: runs at import time


@dataclass(frozen=True)
class Module:
    name: str  # "minipaas.store.queries"
    path: Path
    rel: str  # "minipaas/store/queries.py"
    is_package: bool

    @property
    def top(self) -> str:
        return self.name.split(".")[0]

    @property
    def component(self) -> str:
        """The layer unit: "store" for minipaas.store.*, "" for minipaas/__init__.py."""
        return component_of(self.name)


def component_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def discover(root: Path) -> list[Module]:
    modules = []
    for top in ("minipaas", "tui"):
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules.append(Module(".".join(parts), path, rel.as_posix(), is_package))
    return modules


# --- collecting imports and calls ----------------------------------------------------------


class _Scanner(ast.NodeVisitor):
    """Collects imports (with whether they run at import time), aliases, and calls."""

    def __init__(self, module: Module, known: set[str]) -> None:
        self.module = module
        self.known = known
        self.imports: list[Import] = []
        self.aliases: dict[str, str] = {}
        self.module_level_calls: list[ast.Call] = []
        self.all_calls: list[ast.Call] = []
        self._depth = 0  # > 0 inside a function or lambda body

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append(Import(alias.name, node.lineno, self._depth > 0))
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                self.aliases[head] = head

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._resolve_from(node)
        for alias in node.names:
            candidate = f"{base}.{alias.name}" if base else alias.name
            is_submodule = candidate in self.known or self._looks_like_component(base, alias.name)
            target = candidate if is_submodule else base
            self.imports.append(Import(target, node.lineno, self._depth > 0))
            self.aliases[alias.asname or alias.name] = candidate

    def _looks_like_component(self, base: str, name: str) -> bool:
        # `from minipaas import store` before minipaas/store exists still names a layer.
        return base == "minipaas" and name in BOTTOM | MIDDLE | UPPER | TOP | {CLIENT}

    def _resolve_from(self, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        package = self.module.name.split(".")
        if not self.module.is_package:
            package = package[:-1]
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])

    # scopes: function bodies don't run at import time, but decorators and defaults do
    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self._depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self._depth -= 1

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self._depth += 1
        self.visit(node.body)
        self._depth -= 1

    def visit_If(self, node: ast.If) -> None:
        if self._depth == 0 and _is_main_guard(node.test):
            # `if __name__ == "__main__":` runs only as a script, never on import.
            self._depth += 1
            self.generic_visit(node)
            self._depth -= 1
        else:
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.all_calls.append(node)
        if self._depth == 0:
            self.module_level_calls.append(node)
        self.generic_visit(node)

    def dotted(self, func: ast.expr) -> str | None:
        """The call target as a dotted name with import aliases resolved, if it is one."""
        parts: list[str] = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            return None
        parts.append(self.aliases.get(func.id, func.id))
        return ".".join(reversed(parts))


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


# --- the rules -----------------------------------------------------------------------------


def _layer_problem(src: str, dst: str) -> str | None:
    """Why component `src` may not import component `dst` (both inside minipaas), or None."""
    if src == dst or dst in BOTTOM:
        return None
    if src in BOTTOM:
        return (
            "the bottom layer (errors, names, jsonin, paths, settings, models, sandbox) imports "
            "only itself"
        )
    if src in MIDDLE:
        if (src, dst) in MIDDLE_ALLOWED:
            return None
        return (
            "the middle layer (store, git, build, supervisor, router, logs, metrics) may import "
            "only the bottom layer, not each other (except supervisor → logs)"
        )
    if src == CLIENT:
        return "minipaas.client (the TUI's contract) may import only the bottom layer"
    if dst in ENTRY:
        return None if src in ENTRY else "only the cli's entry points import the cli"
    if dst == "server":
        return None if src in ENTRY else "only the cli imports the server (the composition root)"
    return None  # deploy, api, server, cli and unclassified modules may import downwards


def check_module(module: Module, known: set[str]) -> list[Violation]:
    try:
        tree = ast.parse(module.path.read_text(), filename=module.rel)
    except SyntaxError as exc:
        return [Violation(module.rel, exc.lineno or 0, "syntax", f"does not parse: {exc.msg}")]
    scan = _Scanner(module, known)
    scan.visit(tree)
    found: list[Violation] = []

    def report(line: int, rule: str, message: str) -> None:
        found.append(Violation(module.rel, line, rule, message))

    in_store = module.name == "minipaas.store" or module.name.startswith("minipaas.store.")
    in_git = module.name == "minipaas.git" or module.name.startswith("minipaas.git.")
    for imp in scan.imports:
        head = imp.target.split(".")[0]
        if head in DB_MODULES and not in_store:
            report(imp.line, "sqlite", f"imports {imp.target}; only minipaas/store/ may use SQLite")
        if head == "dulwich" and not in_git:
            report(imp.line, "dulwich", f"imports {imp.target}; only minipaas/git/ may use dulwich")
        if module.top == "tui" and head == "minipaas" and component_of(imp.target) != CLIENT:
            report(
                imp.line,
                "tui",
                f"imports {imp.target}; tui/ may import only minipaas.client from minipaas",
            )
        if module.top == "minipaas" and head == "tui":
            if module.name != "minipaas.cli":
                report(
                    imp.line, "tui", f"imports {imp.target}; only minipaas/cli.py may import tui"
                )
            elif not imp.in_function:
                report(
                    imp.line,
                    "tui",
                    f"imports {imp.target} at module level; import the TUI inside the command "
                    "function so other commands don't load Textual",
                )
        if module.top == "minipaas" and head == "minipaas":
            src, dst = module.component, component_of(imp.target)
            if problem := _layer_problem(src, dst):
                report(imp.line, "layers", f"imports {imp.target}; {problem}")

    for call in scan.module_level_calls:
        name = scan.dotted(call.func)
        method = call.func.attr if isinstance(call.func, ast.Attribute) else None
        if name and (
            name in IO_CALLS or name.startswith(IO_CALL_PREFIXES) or name in IMPORT_TIME_RUNNERS
        ):
            report(call.lineno, "import-time", f"calls {name}() at module level (runs on import)")
        elif method in IO_METHODS:
            report(
                call.lineno, "import-time", f"calls .{method}() at module level (runs on import)"
            )

    for call in scan.all_calls:
        for keyword in call.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                report(call.lineno, "shell", "passes shell=… to a call; use an argv list instead")
        name = scan.dotted(call.func)
        if name in SHELL_CALLS:
            report(call.lineno, "shell", f"calls {name}(), which runs a shell; use an argv list")
    return found


def check_tree(root: Path) -> list[Violation]:
    modules = discover(root)
    known = {module.name for module in modules}
    return sorted(v for module in modules for v in check_module(module, known))


def _format(violations: list[Violation]) -> str:
    return "Architecture rules broken (see tests/test_architecture.py):\n" + "\n".join(
        f"  {v}" for v in violations
    )


# --- tests ---------------------------------------------------------------------------------


def test_the_codebase_follows_the_import_rules() -> None:
    violations = check_tree(REPO)
    assert not violations, _format(violations)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


CLEAN_TREE = {
    "minipaas/__init__.py": '"""pkg"""\n',
    "minipaas/errors.py": "class UserError(Exception): ...\n",
    "minipaas/paths.py": "from .errors import UserError\n",
    "minipaas/store/__init__.py": "import aiosqlite\nfrom minipaas.errors import UserError\n",
    "minipaas/store/queries.py": "import sqlite3\nfrom ..paths import Paths\n",
    "minipaas/git/backend.py": "from dulwich.repo import Repo\nfrom ..paths import Paths\n",
    "minipaas/logs/__init__.py": "",
    "minipaas/supervisor/dynos.py": """\
        import asyncio
        import subprocess
        from minipaas.logs import LogStore
        from minipaas import sandbox

        async def spawn(argv: list[str]) -> None:
            await asyncio.create_subprocess_exec(*argv)
            subprocess.run(argv, shell=False, check=True)
    """,
    "minipaas/deploy.py": "from minipaas.store import queries\nfrom minipaas.git import backend\n",
    "minipaas/api/app.py": "from minipaas import deploy\nfrom minipaas.supervisor import dynos\n",
    "minipaas/server.py": "from minipaas.api import app\nfrom minipaas import deploy, store\n",
    "minipaas/client.py": "import httpx\nfrom minipaas.errors import UserError\n",
    "minipaas/ssh.py": "from minipaas.client import Client\nfrom minipaas.git import backend\n"
    "def run():\n    from minipaas.cli import run_words\n",
    "minipaas/sshkeys.py": "from minipaas.errors import UserError\n",
    "minipaas/__main__.py": "from minipaas.cli import main\n",
    "minipaas/cli.py": """\
        import asyncio
        from minipaas import server
        from minipaas.client import Client

        def tui() -> None:
            from tui.app import make_app
            make_app().run()

        def main() -> None:
            asyncio.run(server.serve())

        if __name__ == "__main__":
            asyncio.run(main())
    """,
    "tui/app.py": "from minipaas.client import Client\nfrom .widgets import logs\n",
    "tui/widgets/logs.py": "from minipaas import client\n",
}


def test_checker_accepts_a_clean_tree(tmp_path: Path) -> None:
    _write(tmp_path, CLEAN_TREE)
    assert check_tree(tmp_path) == []


VIOLATIONS = [
    ("minipaas/logs/files.py", "import sqlite3\n", "sqlite", "sqlite3"),
    ("minipaas/api/git.py", "from dulwich.web import make_wsgi_chain\n", "dulwich", "dulwich.web"),
    ("tui/screens/apps.py", "from minipaas.store import queries\n", "tui", "minipaas.store"),
    ("tui/screens/apps.py", "from minipaas import names\n", "tui", "minipaas.names"),
    ("minipaas/cli.py", "import tui.app\n", "tui", "at module level"),
    ("minipaas/api/app.py", "def f():\n    from tui import app\n", "tui", "only minipaas/cli.py"),
    ("minipaas/router/caddy.py", "from minipaas.store import queries\n", "layers", "store"),
    ("minipaas/logs/files.py", "from ..supervisor import dynos\n", "layers", "supervisor"),
    ("minipaas/metrics/sample.py", "from minipaas import deploy\n", "layers", "minipaas.deploy"),
    ("minipaas/paths.py", "from minipaas.store import queries\n", "layers", "bottom layer"),
    ("minipaas/client.py", "from minipaas.api import app\n", "layers", "minipaas.client"),
    ("minipaas/deploy.py", "from minipaas.server import serve\n", "layers", "only the cli"),
    ("minipaas/api/app.py", "from minipaas import cli\n", "layers", "import the cli"),
    ("minipaas/router/caddy.py", "CONF = open('/etc/x').read()\n", "import-time", "open()"),
    (
        "minipaas/build/run.py",
        "import subprocess as sp\nsp.check_call(['true'])\n",
        "import-time",
        "subprocess.check_call()",
    ),
    (
        "minipaas/build/run.py",
        "from subprocess import run\nif True:\n    run(['true'])\n",
        "import-time",
        "subprocess.run()",
    ),
    ("minipaas/cli.py", "import asyncio\nasyncio.run(main())\n", "import-time", "asyncio.run()"),
    (
        "minipaas/paths.py",
        "from pathlib import Path\nV = Path('v').read_text()\n",
        "import-time",
        ".read_text()",
    ),
    ("minipaas/settings.py", "class S:\n    x = open('f')\n", "import-time", "open()"),
    (
        "minipaas/build/run.py",
        "import subprocess\ndef f(c):\n    subprocess.run(c, shell=True)\n",
        "shell",
        "shell=",
    ),
    ("tui/app.py", "import os\ndef f():\n    os.system('ls')\n", "shell", "os.system()"),
]


@pytest.mark.parametrize(("rel", "source", "rule", "needle"), VIOLATIONS)
def test_checker_catches_a_synthetic_violation(
    tmp_path: Path, rel: str, source: str, rule: str, needle: str
) -> None:
    files = {**CLEAN_TREE, rel: source}
    _write(tmp_path, files)

    violations = check_tree(tmp_path)

    assert violations, f"the checker missed a {rule} violation in {rel}"
    assert all(v.path == rel for v in violations), _format(violations)
    assert any(v.rule == rule and needle in v.message for v in violations), _format(violations)
    assert rel in _format(violations)


def test_unparsable_files_are_reported(tmp_path: Path) -> None:
    _write(tmp_path, {"minipaas/broken.py": "def (:\n"})
    assert [v.rule for v in check_tree(tmp_path)] == ["syntax"]


def test_every_rule_has_a_self_test() -> None:
    rules = {rule for _, _, rule, _ in VIOLATIONS}
    assert rules == {"dulwich", "import-time", "layers", "shell", "sqlite", "tui"}
