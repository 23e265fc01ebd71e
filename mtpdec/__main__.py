"""`python -m mtpdec` runs the command line."""

from mtpdec.cli import run

run()
