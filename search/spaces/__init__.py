"""Search-space TOML files shipped with alexsearch."""
