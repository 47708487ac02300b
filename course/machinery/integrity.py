"""Telling honest code from code that games the grader, by reading it before it runs.

A test cell runs in the student's kernel, after the student's code: whatever that code
changed in the interpreter, the test sees. The sandbox keeps a submission away from
everyone else's files; it cannot stop it from lying to its own tests. So the grader
reads every cell a student could edit (every code cell that nbgrader does not lock
and restore) and looks for the handful of things that no lab asks for and that
tampering needs:

- reaching into the interpreter or the kernel: `get_ipython`, builtins, `sys.modules`,
  excepthook, tracing, frames, `gc`, `ctypes`, `importlib`, `exec`/`eval`/`compile`;
- replacing what the tests use: assigning to an attribute of an imported module
  (`np.allclose = ...`), `setattr`/`delattr`, rebinding a helper that a locked cell
  defined (`def accuracy(...)` over the lab's own);
- leaving early or hiding output: `os._exit`, `sys.exit`, signals, `sys.stderr = ...`;
- magics and shell commands other than the few the labs use.

A finding does not fail anyone: the submission is flagged for a person to review
(and its automatic points withheld until they do), with the cell and line of each.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nbformat import NotebookNode

from course.machinery.notebooks import cell_label, is_test_cell, nbgrader_meta

FORBIDDEN_NAMES = {
    "get_ipython": "reaches into the kernel",
    "__builtins__": "replaces builtins",
    "__import__": "imports by a computed name",
    "exec": "runs code built at run time",
    "eval": "runs code built at run time",
    "compile": "builds code at run time",
    "globals": "edits the interpreter's namespace",
    "vars": "edits the interpreter's namespace",
    "setattr": "replaces attributes by name",
    "delattr": "deletes attributes by name",
    "breakpoint": "stops the kernel",
    "exit": "ends the kernel early",
    "quit": "ends the kernel early",
}
FORBIDDEN_MODULES = {
    "builtins": "replaces builtins",
    "ctypes": "edits memory directly",
    "gc": "finds and edits live objects",
    "importlib": "imports by a computed name",
    "inspect": "reads the interpreter's frames",
    "IPython": "reaches into the kernel",
    "ipykernel": "reaches into the kernel",
    "signal": "changes how the kernel is interrupted",
    "atexit": "runs code when the kernel ends",
    "marshal": "loads raw code objects",
    "sys": None,  # allowed; its dangerous attributes are listed below
    "os": None,
}
FORBIDDEN_ATTRIBUTES = {
    ("sys", "modules"): "replaces imported modules",
    ("sys", "excepthook"): "hides errors",
    ("sys", "displayhook"): "rewrites what cells show",
    ("sys", "settrace"): "traces and edits running code",
    ("sys", "setprofile"): "traces and edits running code",
    ("sys", "_getframe"): "reads and edits the caller's frame",
    ("sys", "addaudithook"): "hooks the interpreter",
    ("sys", "exit"): "ends the kernel early",
    ("os", "_exit"): "ends the kernel early",
    ("os", "kill"): "signals processes",
    ("os", "killpg"): "signals processes",
    ("os", "setsid"): "escapes the grader's interrupts",
    ("os", "setpgid"): "escapes the grader's interrupts",
    ("threading", "settrace"): "traces and edits running code",
}
DUNDERS = {"__globals__", "__code__", "__closure__", "__subclasses__", "__builtins__", "__bases__", "__mro__"}
SETTINGS = {
    "options",
    "rcParams",
    "backends",
}  # pd.options..., plt.rcParams[...], torch.backends...: settings, not code
ALLOWED_CELL_MAGICS = {"writefile", "time", "timeit", "capture"}
ALLOWED_LINE_MAGICS = {"matplotlib", "time", "timeit"}


@dataclass(frozen=True)
class Finding:
    where: str  # "the cell starting `...`, line 3"
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def editable_cells(nb: NotebookNode, release: NotebookNode | None = None) -> list[NotebookNode]:
    """Code cells a student changed or could have: not locked (nbgrader restores those), not as released."""
    shipped = {c.source for c in release.cells if c.cell_type == "code"} if release is not None else set()
    return [
        c for c in nb.cells if c.cell_type == "code" and not nbgrader_meta(c).get("locked") and c.source not in shipped
    ]


def locked_names(nb: NotebookNode) -> dict[str, str]:
    """Names the locked set-up cells give the kernel: their functions, classes and imports, with their origin."""
    names: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and nbgrader_meta(cell).get("locked") and not is_test_cell(cell):
            if not _is_module_file(cell.source):
                names.update(_origins(cell.source))
    return names


def scan(nb: NotebookNode, release: NotebookNode | None = None) -> list[Finding]:
    """Every finding in the cells a student edited; `release` is the notebook as it was handed out."""
    protected = locked_names(release if release is not None else nb)
    modules = {name for cell in nb.cells if cell.cell_type == "code" for name in _imported(cell.source)}
    findings: list[Finding] = []
    for cell in editable_cells(nb, release):
        problems: list[tuple[int, str]] = []
        for python in _python_parts(cell.source, problems):
            try:
                tree = ast.parse(python)
            except SyntaxError:
                continue  # it will fail when it runs, and score what a syntax error scores
            problems += _check(tree, modules)
            if not _is_module_file(cell.source):  # a %%writefile module has a namespace of its own
                problems += _rebinds(tree, protected)
        findings += [Finding(f"{cell_label(cell)}, line {line}", what) for line, what in sorted(set(problems))]
    return findings


def _is_module_file(source: str) -> bool:
    return source.lstrip().startswith("%%writefile")


def _python_parts(source: str, problems: list[tuple[int, str]]) -> list[str]:
    """The Python in a cell: the cell itself, or the body of `%%writefile x.py`; magics checked on the way."""
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].split()[0] if len(first) > 2 else ""
        if magic not in ALLOWED_CELL_MAGICS:
            problems.append((1, f"the cell magic %%{magic} is not allowed in graded work"))
            return []
        if magic == "writefile" and not first.rstrip().endswith(".py"):
            return []  # a data file, not code
        lines = [""] + lines[1:]  # keep line numbers
    kept = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("!") or re.match(r"^\w+\s*=\s*!", stripped):
            problems.append((number, "shell commands are not allowed in graded work"))
            kept.append("")
        elif stripped.startswith("%"):
            name = stripped[1:].split()[0] if len(stripped) > 1 else ""
            if name not in ALLOWED_LINE_MAGICS:
                problems.append((number, f"the magic %{name} is not allowed in graded work"))
                kept.append("")
            else:  # `%time expr` runs expr: keep it, indented as it was
                rest = stripped[1 + len(name) :].strip()
                kept.append(line[: len(line) - len(line.lstrip())] + (rest if name != "matplotlib" else "pass"))
        else:
            kept.append(line)
    return ["\n".join(kept)]


def _trees(source: str) -> list[ast.Module]:
    trees = []
    for python in _python_parts(source, []):
        try:
            trees.append(ast.parse(python))
        except SyntaxError:
            pass
    return trees


def _imported(source: str) -> set[str]:
    names: set[str] = set()
    for tree in _trees(source):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _origins(source: str) -> dict[str, str]:
    """Top-level functions, classes and imports of a cell: name -> where it comes from."""
    origins: dict[str, str] = {}
    for tree in _trees(source):
        for node in tree.body:
            origins.update(_statement_origins(node))
    return origins


def _statement_origins(node: ast.stmt) -> dict[str, str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name: "defined by the lab"}
    if isinstance(node, ast.Import):
        return {(a.asname or a.name).split(".")[0]: f"import {a.name.split('.')[0] if not a.asname else a.name}"
                for a in node.names}  # fmt: skip
    if isinstance(node, ast.ImportFrom):
        return {a.asname or a.name: f"from {node.module} import {a.name}" for a in node.names}
    return {}


def _rebinds(tree: ast.Module, protected: dict[str, str]) -> list[tuple[int, str]]:
    """A top-level statement that gives a locked cell's helper or import another meaning."""
    found = []
    for node in tree.body:
        same_import = _statement_origins(node) if isinstance(node, ast.Import | ast.ImportFrom) else {}
        for name in sorted(_bound_names(node) & set(protected)):
            if same_import.get(name) != protected[name]:
                found.append((node.lineno, f"rebinds `{name}`, which a locked cell of the lab defines"))
    return found


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {name for target in targets for name in _target_names(target)}
    return set()


def _target_names(target: ast.expr) -> set[str]:
    """`a`, `a, (b, *c)`: the names an assignment binds (not `np` in `np.x = ...`: that is not a binding)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        return {name for element in target.elts for name in _target_names(element)}
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def _check(tree: ast.AST, modules: set[str]) -> list[tuple[int, str]]:
    return [(getattr(node, "lineno", 0), what) for node in ast.walk(tree) for what in _node_problems(node, modules)]


def _is_setting(target: ast.Attribute) -> bool:
    node: ast.AST = target
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Attribute) and node.attr in SETTINGS:
            return True
        node = node.value
    return False


def _node_problems(node: ast.AST, modules: set[str]) -> Iterable[str]:
    if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
        yield f"uses `{node.id}` ({FORBIDDEN_NAMES[node.id]})"
    elif isinstance(node, ast.Import | ast.ImportFrom):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            why = FORBIDDEN_MODULES.get(name.split(".")[0])
            if why:
                yield f"imports `{name}` ({why})"
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                why = FORBIDDEN_ATTRIBUTES.get((node.module or "", alias.name))
                if why:
                    yield f"imports `{node.module}.{alias.name}` ({why})"
    elif isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES:
            yield f"uses `{node.value.id}.{node.attr}` ({FORBIDDEN_ATTRIBUTES[(node.value.id, node.attr)]})"
        if node.attr in DUNDERS:
            yield f"uses `{node.attr}` (reads or edits code objects)"
    elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute):
                root = _root(target)
                if root in modules and not _is_setting(target):
                    yield f"replaces `{ast.unparse(target)}` on an imported module"
                if root == "sys" and target.attr in ("stdout", "stderr"):
                    yield f"replaces `sys.{target.attr}` (hides what cells print)"
