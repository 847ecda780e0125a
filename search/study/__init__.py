"""Creating or resuming a study: the conflict check, the study note and the best-trial artifacts."""
