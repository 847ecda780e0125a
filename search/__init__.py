"""The search: space, objective, pruning, workers, CLI, export, final and report."""
