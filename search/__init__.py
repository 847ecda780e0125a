"""The search: cli/ on top; space/, trials/, study/, workers/; export, final and report."""
