"""The dependency graph of a project's services.

Edges run from a service to each service it needs: depends_on, links,
volumes_from and `service:` references in network_mode, ipc and pid.
Start order is networkx's topological generations (independent services
together); stop order is the reverse.

The cycle check runs on every load, so it walks the edges itself: importing
networkx costs ~110 ms, too much for `composer config -q` and every other
command's start-up. Everything that orders work imports networkx lazily.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from composer.loader.errors import LoadError, Problem
from composer.loader.nodes import MapNode, Mark
from runtime.record import record

if TYPE_CHECKING:
    import networkx


@record
class Edge:
    service: str
    needs: str
    kind: str  # depends_on, links, volumes_from, network_mode, ipc, pid
    mark: Mark | None = None


def edges_from_tree(tree: MapNode) -> list[Edge]:
    """Every dependency edge of a project tree, with where it is written.

    Normalization copies implied dependencies into depends_on; they keep the
    field that implies them (links, network_mode …) as their kind.
    """
    from composer.loader.normalize import implicit_dependencies

    edges: list[Edge] = []
    for name, service in (tree.get("services") or {}).items():
        if not isinstance(service, MapNode):
            continue
        implied = implicit_dependencies(service)
        edges.extend(Edge(name, needed, kind, mark) for needed, mark, _r, kind, _w in implied)
        depends = service.get("depends_on") or {}
        if isinstance(depends, MapNode):
            already = {needed for needed, *_ in implied}
            edges.extend(
                Edge(name, needed, "depends_on", depends.key_marks.get(needed))
                for needed in depends
                if needed not in already
            )
    return edges


def find_cycle(edges: Iterable[Edge]) -> list[Edge] | None:
    """One dependency cycle as its edges in order, or None (iterative DFS)."""
    out: dict[str, list[Edge]] = {}
    for edge in edges:
        out.setdefault(edge.service, []).append(edge)
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for root in out:
        if state.get(root):
            continue
        path: list[Edge] = []
        stack = [(root, iter(out.get(root, ())))]
        state[root] = 1
        while stack:
            node, pending = stack[-1]
            edge = next(pending, None)
            if edge is None:
                state[node] = 2
                stack.pop()
                if path:
                    path.pop()
                continue
            seen = state.get(edge.needs)
            if seen == 1:
                # stack[k] is where the cycle starts and path[k] leaves it.
                k = next(i for i, (name, _) in enumerate(stack) if name == edge.needs)
                return [*path[k:], edge]
            if seen is None:
                state[edge.needs] = 1
                path.append(edge)
                stack.append((edge.needs, iter(out.get(edge.needs, ()))))
    return None


def check_acyclic(tree: MapNode) -> None:
    """Raise LoadError naming the cycle as `a → b → a`, with each edge's location."""
    cycle = find_cycle(edges_from_tree(tree))
    if not cycle:
        return
    names = [cycle[0].service] + [edge.needs for edge in cycle]
    related = tuple((f"{edge.service} → {edge.needs} ({edge.kind})", edge.mark) for edge in cycle)
    first = cycle[0]
    raise LoadError(
        [
            Problem(
                "dependency cycle: " + " → ".join(names),
                first.mark,
                ("services", first.service, first.kind),
                hint="remove one of these dependencies",
                related=related,
            )
        ]
    )


class ServiceGraph:
    """Ordering of a project's services, on a networkx DiGraph (service → what it needs)."""

    def __init__(self, services: Iterable[str], edges: Iterable[Edge]) -> None:
        import networkx as nx

        self.graph: networkx.DiGraph = nx.DiGraph()
        self.graph.add_nodes_from(services)
        for edge in edges:
            if edge.needs in self.graph:
                self.graph.add_edge(edge.service, edge.needs, kind=edge.kind)

    @classmethod
    def from_tree(cls, tree: MapNode) -> ServiceGraph:
        return cls(list((tree.get("services") or {}).keys()), edges_from_tree(tree))

    def dependencies(self, service: str) -> set[str]:
        """Everything service needs, directly or not."""
        import networkx as nx

        return set(nx.descendants(self.graph, service))

    def dependents(self, service: str) -> set[str]:
        """Everything that needs service, directly or not."""
        import networkx as nx

        return set(nx.ancestors(self.graph, service))

    def select(self, services: Iterable[str], with_dependencies: bool = True) -> set[str]:
        """The services to act on: the named ones, plus what they need unless --no-deps."""
        chosen = set(services)
        if with_dependencies:
            for name in list(chosen):
                chosen |= self.dependencies(name)
        return chosen

    def start_generations(self, services: Iterable[str] | None = None) -> list[list[str]]:
        """Groups to start in order; each group's services can start together."""
        import networkx as nx

        graph = self.graph if services is None else self.graph.subgraph(set(services))
        # Edges point at dependencies, so the reverse graph's generations start them first.
        return [sorted(group) for group in nx.topological_generations(graph.reverse(copy=False))]

    def stop_generations(self, services: Iterable[str] | None = None) -> list[list[str]]:
        return list(reversed(self.start_generations(services)))
