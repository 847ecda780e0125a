"""The search space: parameters and their ranges (space.py), the samplers that draw from it, and pruning."""
