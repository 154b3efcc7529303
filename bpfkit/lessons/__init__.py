"""One module per lesson (its check and the helpers only it needs), the checker they
share, and the record of which exercises are solved.

The layers and what each may import: docs/architecture.md."""
