"""Storage defaults, apart from the modules that need SQLAlchemy and Optuna, so `--help` can show them fast."""

DEFAULT_STORAGE = "sqlite:///alexsearch.db"
# Defaults that suit trials of minutes to hours: a beat each minute, declared dead after 10 minutes
# of silence (a long evaluation or a checkpoint write on a slow disk never takes that long).
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 600
MAX_RETRY = 2
OUTAGE_TIMEOUT_S = 300.0  # how long a worker waits for its database to come back, s
