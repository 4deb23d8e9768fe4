"""The story map (``gateway map`` and the ``/map`` page): stories drawn as a graph of steps.

:func:`build_graph` makes the model; :func:`to_mermaid` and :func:`to_svg` render it; :func:`map_page`
is the whole HTML page. The SVG layout is pure Python (no Graphviz to install).
"""

from designer.story_map.graph import StoryGraph, build_graph
from designer.story_map.mermaid import to_mermaid
from designer.story_map.page import map_page
from designer.story_map.svg import to_svg

__all__ = ["StoryGraph", "build_graph", "map_page", "to_mermaid", "to_svg"]
