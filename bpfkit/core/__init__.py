"""The kit's pure ground floor: its errors, the table of map types, the lessons' catalogue.
Nothing here touches the system, so anything above may use it, and unit tests need no root.

The layers and what each may import: docs/architecture.md."""
