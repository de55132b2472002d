"""Files and functions stay small enough to read: no file over 450 lines, and no function
over 60 lines or cyclomatic complexity 15 unless its docstring says why (``Why one piece:``)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("pipeline", "transforms", "models", "benchmarks")
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60
MAX_COMPLEXITY = 15
EXCUSE = "Why one piece:"

_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.IfExp, ast.Assert,
             ast.match_case)


def complexity(function: ast.AST) -> int:
    """McCabe's count: 1 + one per branch, boolean operand and comprehension clause."""
    count = 1
    for node in ast.walk(function):
        if isinstance(node, _BRANCHES):
            count += 1
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            count += 1 + len(node.ifs)
    return count


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py"))


def test_no_file_is_too_long() -> None:
    long = [f"{p.relative_to(REPO)}: {n}" for p in sources()
            if (n := p.read_text().count("\n")) > MAX_FILE_LINES]
    assert not long, "files over 450 lines:\n" + "\n".join(long)


def test_long_or_branchy_functions_say_why() -> None:
    unexplained = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = node.end_lineno - node.lineno + 1
            branches = complexity(node)
            if lines <= MAX_FUNCTION_LINES and branches <= MAX_COMPLEXITY:
                continue
            if EXCUSE not in (ast.get_docstring(node) or ""):
                unexplained.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
                                   f"({lines} lines, complexity {branches})")
    assert not unexplained, "split these or say why in the docstring:\n" + "\n".join(unexplained)


def test_complexity_counts_branches() -> None:
    tree = ast.parse("def f(x):\n    if x and x > 1:\n        return [y for y in x if y]\n"
                     "    for i in x:\n        pass\n")
    assert complexity(tree.body[0]) == 1 + 1 + 1 + 2 + 1
