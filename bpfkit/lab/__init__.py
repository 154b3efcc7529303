"""The lessons' laboratory: cgroups, veth networks, AF_XDP sockets, traffic and the child
processes that make it.

The layers and what each may import: docs/architecture.md."""
