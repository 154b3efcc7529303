"""Maps seen from Python: one `Map` over the table of kernel map types, a pure codec per family,
and the maps made from Python that BCC cannot declare.

    maptypes (the table) -> spec, layout, convert -> codecs/ -> failures, snapshot, memory, pins
    -> map (Map) -> create (create_map, open_pinned, map_types)
"""
from .create import create_map, map_types, open_pinned
from .map import Map
from .snapshot import Snapshot

__all__ = ["Map", "Snapshot", "create_map", "open_pinned", "map_types"]
