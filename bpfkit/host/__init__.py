"""What the kit made and must free (lifetime), network namespaces, sockets: the host-side
objects a map may refer to.

The layers and what each may import: docs/architecture.md."""
