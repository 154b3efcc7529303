"""Watching programs and maps: samples and live plots, event streams, test runs, profiles.

The layers and what each may import: docs/architecture.md."""
