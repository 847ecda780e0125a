"""Ways to start N workers on one study: local.py (processes on this machine, forked by a forkserver)."""
