"""Use cases: each service takes its stores and settings explicitly and returns plain values."""
