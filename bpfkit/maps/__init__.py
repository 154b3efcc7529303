"""Maps of a loaded program: `Map` and the readers for map families that need their own."""
from .map import Map
from . import array  # noqa: F401  (registers the array reader)
from . import prog_array  # noqa: F401  (registers the program-array reader)
from . import map_of_maps  # noqa: F401  (registers the map-of-maps reader)
from . import devmap  # noqa: F401  (registers the devmap reader)
from . import sockmap  # noqa: F401  (registers the sockmap/sockhash reader)

__all__ = ["Map"]
