"""`python -m anygpt ...` is the `anygpt` command (anygpt.cli)."""

from anygpt.cli import console

console()
