"""The only package that knows the web framework (Starlette on granian)."""
