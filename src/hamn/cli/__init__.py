"""The ``hamn`` command line."""
