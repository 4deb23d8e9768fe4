"""A layered (Sugiyama-style) layout of the story map in pure Python: no Graphviz to install.

Each story is laid out on its own, top to bottom: cycles are broken by reversing the edges that point
back along a depth-first walk from the story's start; steps get layers by longest path; every edge gets
a virtual node in each layer it crosses, and its label one of its own (so labels never sit on a step);
layers are ordered by barycenter sweeps that keep the order with the fewest crossings; x positions
come from an exact weighted least-squares fit under the spacing constraints (pool adjacent violators),
which pulls long edges straight. An edge to another story ends at a small box naming that story (the
SVG links it to the story's frame), so frames never need lines between them. Frames are then packed in
rows. Deterministic: the same stories always give the same drawing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from designer.story_map.graph import Edge, StoryGraph, StoryGroup
from designer.story_map.shapes import Shape, label_shape, node_shape, stub_shape, text_width

Point = tuple[float, float]

NODE_GAP = 22.0  # between two boxes side by side
VIRTUAL_WIDTH = 6.0  # a plain virtual node: an edge passing through a layer
RANK_GAP = 9.0  # between two layers
FRAME_PAD = 16.0
FRAME_TITLE = 30.0
FRAME_GAP = 28.0
MAX_ROW_WIDTH = 1600.0
LOOP_WIDTH = 34.0  # room a self-loop (retry) takes on the right of its step
SWEEPS = 10
FIT_ROUNDS = 12


@dataclass(frozen=True, slots=True)
class Box:
    """A drawn box (a node or a stub), ``x``/``y`` its top-left corner in map coordinates."""

    id: str
    x: float
    y: float
    width: float
    height: float
    shape: Shape
    stub_story: str | None = None  # set for the box standing for another story

    @property
    def center(self) -> Point:
        return (self.x + self.width / 2, self.y + self.height / 2)


@dataclass(frozen=True, slots=True)
class Route:
    """An edge's path from its source to its target (arrow at the end), and where its label sits."""

    edge: Edge
    points: tuple[Point, ...]
    label_at: Point | None = None
    label: Shape | None = None
    loop: bool = False  # a step back to itself (retry): drawn as a loop on its right side


@dataclass(frozen=True, slots=True)
class Frame:
    group: StoryGroup
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class MapLayout:
    width: float
    height: float
    frames: tuple[Frame, ...]
    boxes: tuple[Box, ...]
    routes: tuple[Route, ...]


def layout_map(graph: StoryGraph, top: float = 0.0) -> MapLayout:
    """Lay out every story, then pack their frames in rows starting at ``top``."""
    clusters = [_Cluster(graph, group).layout() for group in graph.groups]
    row_width = max([MAX_ROW_WIDTH, *(c.width for c in clusters)])
    frames: list[Frame] = []
    boxes: list[Box] = []
    routes: list[Route] = []
    x = y = 0.0
    row_height = 0.0
    width = 0.0
    for cluster in clusters:
        if x > 0 and x + cluster.width > row_width:
            x, y = 0.0, y + row_height + FRAME_GAP
            row_height = 0.0
        dx, dy = x, y + top
        frames.append(Frame(cluster.group, dx, dy, cluster.width, cluster.height))
        boxes.extend(_moved_box(box, dx, dy) for box in cluster.boxes)
        routes.extend(_moved_route(route, dx, dy) for route in cluster.routes)
        x += cluster.width + FRAME_GAP
        width = max(width, x - FRAME_GAP)
        row_height = max(row_height, cluster.height)
    return MapLayout(width, top + y + row_height, tuple(frames), tuple(boxes), tuple(routes))


def _moved_box(box: Box, dx: float, dy: float) -> Box:
    return Box(box.id, box.x + dx, box.y + dy, box.width, box.height, box.shape, box.stub_story)


def _moved_route(route: Route, dx: float, dy: float) -> Route:
    points = tuple((px + dx, py + dy) for px, py in route.points)
    label_at = (route.label_at[0] + dx, route.label_at[1] + dy) if route.label_at is not None else None
    return Route(route.edge, points, label_at, route.label, route.loop)


@dataclass(slots=True)
class _Chain:
    """One edge through the layers: ``vertices`` from the upper end to the lower end."""

    edge: Edge
    vertices: list[str]
    reversed: bool  # drawn from the lower end up to the upper end
    label_vertex: str | None = None


@dataclass(slots=True)
class _LaidOut:
    group: StoryGroup
    width: float
    height: float
    boxes: list[Box] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


class _Cluster:
    """The layout of one story's frame, in frame coordinates."""

    def __init__(self, graph: StoryGraph, group: StoryGroup) -> None:
        self.group = group
        self.shapes: dict[str, Shape] = {}
        self.stub_story: dict[str, str] = {}
        self.edges: list[tuple[str, str, Edge]] = []
        self.loops: list[tuple[str, Edge]] = []
        self.order_of: dict[str, int] = {}
        for node_id in group.nodes:
            self._vertex(node_id, node_shape(graph.nodes[node_id]))
        for n, edge in enumerate(graph.edges):
            if graph.nodes[edge.source].story != group.story:
                continue
            if edge.source == edge.target:
                self.loops.append((edge.source, edge))
            elif graph.crosses_stories(edge):
                stub = f"stub:{n}"
                target_story = graph.nodes[edge.target].story
                self._vertex(stub, stub_shape(target_story))
                self.stub_story[stub] = target_story
                self.edges.append((edge.source, stub, edge))
            else:
                self.edges.append((edge.source, edge.target, edge))
        self.back: set[tuple[str, str]] = set()  # edges drawn against the flow (they close a cycle)
        self.rank: dict[str, int] = {}  # doubled layers: steps on even ones, labels on odd ones
        self.up: dict[str, list[str]] = {}
        self.down: dict[str, list[str]] = {}
        self.extra_right: dict[str, float] = {}
        for vertex, edge in self.loops:
            label = label_shape(edge)
            extra = LOOP_WIDTH + (label.width if label is not None else 0.0)
            self.extra_right[vertex] = max(self.extra_right.get(vertex, 0.0), extra)
        self.width: dict[str, float] = {
            v: s.width + self.extra_right.get(v, 0.0) for v, s in self.shapes.items()
        }
        self.height: dict[str, float] = {v: s.height for v, s in self.shapes.items()}

    def _vertex(self, vertex: str, shape: Shape) -> None:
        self.shapes[vertex] = shape
        self.order_of[vertex] = len(self.order_of)

    # -- the steps --------------------------------------------------------------------------------

    def layout(self) -> _LaidOut:
        ranks = self._ranks()
        chains = self._chains(ranks)
        layers = self._order(chains, self.rank)
        x = self._fit(layers, chains)
        y_top, heights = self._rows(layers)
        return self._place(layers, chains, x, y_top, heights)

    def _ranks(self) -> dict[str, int]:
        """Longest-path layers after reversing the edges that close a cycle in a depth-first walk.

        The walk starts at the story's start (its markers and entry), so the entry stays on top; steps
        it never reaches are walked after, and their edges into the reached part point up, so a stray
        step hangs beside its target instead of pushing the whole story down.
        """
        out: dict[str, list[str]] = {v: [] for v in self.shapes}
        for source, target, _ in self.edges:
            out[source].append(target)
        back: set[tuple[str, str]] = set()
        state: dict[str, int] = {}  # 1: on the walk's path, 2: done
        first_walk: set[str] = set()
        for n, roots in enumerate((self._roots(), list(self.shapes))):
            for root in roots:
                if root in state:
                    continue
                state[root] = 1
                stack = [(root, iter(out[root]))]
                while stack:
                    vertex, successors = stack[-1]
                    for successor in successors:
                        if state.get(successor) == 1 or (n == 1 and successor in first_walk):
                            back.add((vertex, successor))
                        elif successor not in state:
                            state[successor] = 1
                            stack.append((successor, iter(out[successor])))
                            break
                    else:
                        state[vertex] = 2
                        stack.pop()
            if n == 0:
                first_walk = set(state)
        self.back = back
        incoming: dict[str, list[str]] = {v: [] for v in self.shapes}
        for source, target, _ in self.edges:
            upper, lower = (target, source) if (source, target) in back else (source, target)
            incoming[lower].append(upper)
        # longest path, in topological order (Kahn): without the back edges there is no cycle
        waiting = {v: len(ups) for v, ups in incoming.items()}
        below: dict[str, list[str]] = {v: [] for v in self.shapes}
        for lower, ups in incoming.items():
            for upper in ups:
                below[upper].append(lower)
        rank = dict.fromkeys(self.shapes, 0)
        ready = [v for v in self.shapes if not waiting[v]]
        while ready:
            vertex = ready.pop()
            for lower in below[vertex]:
                rank[lower] = max(rank[lower], rank[vertex] + 1)
                waiting[lower] -= 1
                if not waiting[lower]:
                    ready.append(lower)
        return rank

    def _roots(self) -> list[str]:
        """Where the story starts: its trigger and no-match markers, and its entry step."""
        return list(self.group.nodes[: self.group.nodes.index(self.group.entry) + 1])

    def _chains(self, rank: dict[str, int]) -> list[_Chain]:
        """Each edge as a chain of vertices, one per doubled layer; labels get the odd layer nearest
        their source."""
        self.rank = {vertex: 2 * r for vertex, r in rank.items()}
        chains: list[_Chain] = []
        count = 0
        for source, target, edge in self.edges:
            reversed_ = (source, target) in self.back
            upper, lower = (target, source) if reversed_ else (source, target)
            vertices = [upper]
            for r in range(self.rank[upper] + 1, self.rank[lower]):
                count += 1
                virtual = f"v:{count}"
                self.rank[virtual] = r
                self.width[virtual] = VIRTUAL_WIDTH
                self.height[virtual] = 0.0
                self.order_of[virtual] = len(self.order_of)
                vertices.append(virtual)
            vertices.append(lower)
            chain = _Chain(edge, vertices, reversed_)
            label = label_shape(edge)
            if label is not None:
                chain.label_vertex = vertices[-2] if reversed_ else vertices[1]
                self.width[chain.label_vertex] = label.width
                self.height[chain.label_vertex] = label.height
            chains.append(chain)
        return chains

    def _order(self, chains: list[_Chain], rank: dict[str, int]) -> list[list[str]]:
        """Vertices of each layer, left to right, with few crossings."""
        depth = max(rank.values(), default=0) + 1
        up: dict[str, list[str]] = {v: [] for v in rank}
        down: dict[str, list[str]] = {v: [] for v in rank}
        for chain in chains:
            for upper, lower in pairwise(chain.vertices):
                down[upper].append(lower)
                up[lower].append(upper)
        self.up, self.down = up, down
        layers: list[list[str]] = [[] for _ in range(depth)]
        for vertex in sorted(rank, key=lambda v: self.order_of[v]):
            layers[rank[vertex]].append(vertex)
        # a first order that follows the edges: each layer by its parents' places
        for r in range(1, depth):
            place = {v: i for i, v in enumerate(layers[r - 1])}
            layers[r].sort(key=lambda v: _mean([place[u] for u in up[v]], self.order_of[v] / 1e6))
        best = [list(layer) for layer in layers]
        best_crossings = self._crossings(layers)
        for sweep in range(SWEEPS):
            downward = sweep % 2 == 0
            indices = range(1, depth) if downward else range(depth - 2, -1, -1)
            for r in indices:
                neighbours = up if downward else down
                place = {v: i for i, v in enumerate(layers[r - 1 if downward else r + 1])}
                current = {v: i for i, v in enumerate(layers[r])}
                layers[r].sort(key=lambda v: _mean([place[u] for u in neighbours[v]], current[v]))
            crossings = self._crossings(layers)
            if crossings < best_crossings:
                best, best_crossings = [list(layer) for layer in layers], crossings
        return best

    def _crossings(self, layers: list[list[str]]) -> int:
        total = 0
        for r in range(len(layers) - 1):
            lower = {v: i for i, v in enumerate(layers[r + 1])}
            pairs = [(i, lower[w]) for i, v in enumerate(layers[r]) for w in self.down[v]]
            for n, (a1, b1) in enumerate(pairs):
                for a2, b2 in pairs[n + 1 :]:
                    if (a1 - a2) * (b1 - b2) < 0:
                        total += 1
        return total

    def _fit(self, layers: list[list[str]], chains: list[_Chain]) -> dict[str, float]:
        """x of each vertex's center: near its neighbours' mean, never closer than the gaps allow."""
        x: dict[str, float] = {}
        for layer in layers:
            at = 0.0
            for i, vertex in enumerate(layer):
                if i:
                    at += self._separation(layer[i - 1], vertex)
                x[vertex] = at

        def weight(a: str, b: str) -> float:
            virtual = sum(v.startswith("v:") for v in (a, b))
            return (1.0, 2.0, 8.0)[virtual]

        depth = len(layers)
        passes: list[tuple[int, str]] = []
        for _ in range(FIT_ROUNDS):
            passes.extend((r, "up") for r in range(1, depth))
            passes.extend((r, "down") for r in range(depth - 2, -1, -1))
        passes.extend((r, "both") for r in range(depth))
        for r, direction in passes:
            layer = layers[r]
            desired: list[float] = []
            weights: list[float] = []
            for vertex in layer:
                neighbours = []
                if direction in ("up", "both"):
                    neighbours += self.up[vertex]
                if direction in ("down", "both"):
                    neighbours += self.down[vertex]
                if neighbours:
                    ws = [weight(vertex, n) for n in neighbours]
                    desired.append(sum(w * x[n] for w, n in zip(ws, neighbours, strict=True)) / sum(ws))
                    weights.append(sum(ws))
                else:
                    desired.append(x[vertex])
                    weights.append(0.05)
            gaps = [0.0] + [self._separation(a, b) for a, b in pairwise(layer)]
            for vertex, value in zip(layer, _fit_in_order(desired, weights, gaps), strict=True):
                x[vertex] = value
        return x

    def _separation(self, left: str, right: str) -> float:
        gap = NODE_GAP if not (left.startswith("v:") and right.startswith("v:")) else NODE_GAP / 2
        return (self.width[left] + self.width[right]) / 2 + gap

    def _rows(self, layers: list[list[str]]) -> tuple[list[float], list[float]]:
        heights = [max((self.height[v] for v in layer), default=0.0) for layer in layers]
        tops: list[float] = []
        at = 0.0
        for height in heights:
            tops.append(at)
            at += height + RANK_GAP
        return tops, heights

    def _place(
        self,
        layers: list[list[str]],
        chains: list[_Chain],
        x: dict[str, float],
        tops: list[float],
        heights: list[float],
    ) -> _LaidOut:
        # boxes (the drawn part of a vertex with a loop is left of its layout width)
        boxes: dict[str, Box] = {}
        for r, layer in enumerate(layers):
            for vertex in layer:
                if vertex.startswith("v:"):
                    continue
                shape = self.shapes[vertex]
                left = x[vertex] - self.width[vertex] / 2
                top = tops[r] + (heights[r] - shape.height) / 2
                boxes[vertex] = Box(
                    vertex, left, top, shape.width, shape.height, shape, self.stub_story.get(vertex)
                )
        ports = self._ports(chains, boxes, x)
        routes: list[Route] = []
        for n, chain in enumerate(chains):
            points: list[Point] = [ports[(n, 0)]]
            for vertex in chain.vertices[1:-1]:
                r = self.rank[vertex]
                points.append((x[vertex], tops[r]))
                points.append((x[vertex], tops[r] + heights[r]))
            points.append(ports[(n, 1)])
            label_at = None
            if chain.label_vertex is not None:
                r = self.rank[chain.label_vertex]
                label_at = (x[chain.label_vertex], tops[r] + heights[r] / 2)
            if chain.reversed:
                points.reverse()
            routes.append(Route(chain.edge, tuple(points), label_at, label_shape(chain.edge)))
        for vertex, edge in self.loops:
            box = boxes[vertex]
            right, middle = box.x + box.width, box.y + box.height / 2
            points_loop = ((right, middle - 7.0), (right, middle + 7.0))
            label_at = (right + LOOP_WIDTH, middle)
            routes.append(Route(edge, points_loop, label_at, label_shape(edge), loop=True))
        return self._framed(list(boxes.values()), routes)

    def _ports(
        self, chains: list[_Chain], boxes: dict[str, Box], x: dict[str, float]
    ) -> dict[tuple[int, int], Point]:
        """Where each chain leaves its upper box (bottom side) and enters its lower one (top side),
        spread along the side in the order of the chain's next vertex, so lines do not bundle."""
        sides: dict[tuple[str, int], list[tuple[float, int, int]]] = {}
        for n, chain in enumerate(chains):
            upper, lower = chain.vertices[0], chain.vertices[-1]
            sides.setdefault((upper, 0), []).append((x[chain.vertices[1]], n, 0))
            sides.setdefault((lower, 1), []).append((x[chain.vertices[-2]], n, 1))
        ports: dict[tuple[int, int], Point] = {}
        for (vertex, end), uses in sides.items():
            box = boxes[vertex]
            uses.sort()
            span = box.width * 0.6
            for i, (_, n, which) in enumerate(uses):
                offset = 0.0 if len(uses) == 1 else -span / 2 + span * i / (len(uses) - 1)
                px = box.x + box.width / 2 + offset
                ports[(n, which)] = (px, box.y + box.height) if end == 0 else (px, box.y)
        return ports

    def _framed(self, boxes: list[Box], routes: list[Route]) -> _LaidOut:
        """Shift everything into the frame: padding around, room for the title on top."""
        lefts = [b.x for b in boxes] + [p[0] for r in routes for p in r.points]
        rights = [b.x + b.width for b in boxes] + [p[0] for r in routes for p in r.points]
        for route in routes:
            if route.label_at is not None and route.label is not None:
                offset = 0.0 if not route.loop else route.label.width / 2
                lefts.append(route.label_at[0] + offset - route.label.width / 2)
                rights.append(route.label_at[0] + offset + route.label.width / 2)
        bottoms = [b.y + b.height for b in boxes]
        min_x = min(lefts)
        dx = FRAME_PAD - min_x
        dy = FRAME_TITLE + FRAME_PAD / 2
        title = text_width(self.group.story, 14.0, bold=True) + 2 * FRAME_PAD + 160.0
        width = max(max(rights) - min_x + 2 * FRAME_PAD, title)
        height = max(bottoms) + dy + FRAME_PAD
        laid = _LaidOut(self.group, width, height)
        laid.boxes = [_moved_box(box, dx, dy) for box in boxes]
        laid.routes = [_moved_route(route, dx, dy) for route in routes]
        return laid


def _mean(values: list[int], default: float) -> float:
    return sum(values) / len(values) if values else default


def _fit_in_order(desired: list[float], weights: list[float], gaps: list[float]) -> list[float]:
    """Minimise sum w·(x - d)² subject to x[i] >= x[i-1] + gaps[i] (pool adjacent violators)."""
    offsets: list[float] = []
    total = 0.0
    for gap in gaps:
        total += gap
        offsets.append(total)
    blocks: list[list[float]] = []  # [weight, weighted sum, count]
    for d, w, o in zip(desired, weights, offsets, strict=True):
        blocks.append([w, w * (d - o), 1])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] > blocks[-1][1] / blocks[-1][0]:
            w2, s2, c2 = blocks.pop()
            blocks[-1][0] += w2
            blocks[-1][1] += s2
            blocks[-1][2] += c2
    values: list[float] = []
    for w, s, count in blocks:
        values.extend([s / w] * int(count))
    return [value + o for value, o in zip(values, offsets, strict=True)]
