"""Pure OCI rules (no I/O): digests, names and references, manifests."""
