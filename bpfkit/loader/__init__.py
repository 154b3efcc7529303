"""From C text to a running program: compile (crash-safe), read the compiler's and the
verifier's words, load with BCC or libbpf, attach, and probe what the kernel allows.

The layers and what each may import: docs/architecture.md."""
