"""``python -m surealived.ipvssync``: the same as the ``ipvssync`` command."""

from .cli import main

main(prog_name="ipvssync")
