"""The doors to the system: libc and libbpf through ctypes, BCC's internals, the bpf()
calls, the machine's tools and facts, and the sentence for each refusal of the kernel.

The layers and what each may import: docs/architecture.md."""
