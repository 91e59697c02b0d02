"""The ``ebee`` command line: bpftool-shaped subcommands over the library."""
from .main import main

__all__ = ["main"]
