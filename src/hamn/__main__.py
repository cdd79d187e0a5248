"""``python -m hamn`` runs the CLI."""

from hamn.cli.main import main

main()
