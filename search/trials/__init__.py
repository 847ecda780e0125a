"""A trial: its config, the objective that trains it, its record on the study, and plans that enqueue trials."""
