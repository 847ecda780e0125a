"""`python -m search.cli` = `alexsearch`."""

from search.cli import entry

entry()
