"""Opening studies: URL checks, SQLite settings, heartbeat and retry, checkpoints and artifacts."""
