"""The network, the data and the training loop. Knows nothing of Optuna."""
