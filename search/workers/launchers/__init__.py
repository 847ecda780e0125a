"""Ways to start N workers on one study: local.py (spawned processes on this machine)."""
