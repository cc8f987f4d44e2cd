"""The import graph of the project's packages: which package imports which, and any import circle between
modules or between packages (lazy imports inside functions count too).

    python -m tools.import_graph            # package edges, then cycles; exit status 1 when there is one

A `__main__` module is a command, not library code: its imports are listed apart and never make a package cycle
(`python -m capture --intervention` hands the interventions' spec loader to the capture library that way).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict

from tools.source import PACKAGES, Module, modules


def imported_names(module: Module) -> set[str]:
    """Dotted names of project modules that `module` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: resolve against the module's package
            base = module.name.split(".")[: -node.level] if not module.path.name == "__init__.py" else \
                module.name.split(".")[: len(module.name.split(".")) - node.level + 1]
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def module_graph(found: list[Module]) -> dict[str, set[str]]:
    """module -> the project modules it imports (names resolved to the longest existing module)."""
    names = {m.name for m in found}
    graph: dict[str, set[str]] = {}
    for module in found:
        targets = set()
        for name in imported_names(module):
            parts = name.split(".")
            while parts and ".".join(parts) not in names:
                parts.pop()
            if parts and ".".join(parts) != module.name:
                targets.add(".".join(parts))
        graph[module.name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_graph(found: list[Module], graph: dict[str, set[str]], entry_points: bool) -> dict[str, set[str]]:
    """package -> packages it imports, from library modules only (or from `__main__` modules only)."""
    by_name = {m.name: m for m in found}
    packages: dict[str, set[str]] = defaultdict(set)
    for name, targets in graph.items():
        if by_name[name].is_entry_point != entry_points:
            continue
        packages[by_name[name].package] |= {t.split(".")[0] for t in targets} - {by_name[name].package}
    return dict(packages)


def report() -> tuple[list[str], bool]:
    """Lines describing the graph, and whether it has no cycle."""
    found = modules()
    graph = module_graph(found)
    library = package_graph(found, graph, entry_points=False)
    commands = package_graph(found, graph, entry_points=True)
    lines = ["package imports (library modules):"]
    lines += [f"  {package} -> {', '.join(sorted(targets)) or '(none)'}" for package, targets in sorted(library.items())]
    lines.append("package imports of the commands (__main__ modules):")
    lines += [f"  {package} -> {', '.join(sorted(targets)) or '(none)'}" for package, targets in sorted(commands.items())]
    module_cycles, package_cycles = cycles(graph), cycles(library)
    lines.append("module cycles: " + ("none" if not module_cycles else "; ".join(" <-> ".join(c) for c in module_cycles)))
    lines.append("package cycles: " + ("none" if not package_cycles else "; ".join(" <-> ".join(c) for c in package_cycles)))
    return lines, not module_cycles and not package_cycles


def main() -> int:
    lines, ok = report()
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
