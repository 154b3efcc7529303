"""Maps of a loaded program: `Map` and the readers for map families that need their own."""
from .map import Map

__all__ = ["Map"]
