"""`alexsearch report`: the study as the course report showed it, drawn from the storage alone.

- curves.py: train and validation accuracy per epoch, one figure per searched parameter (report Figures 3-6)
- optuna_plots.py: optimization history and parameter importance (PNG), Optuna's plotly figures (HTML)
- summary.py: summary.md and index.html (best config, trials, pruned/stopped counts, epochs trained)
- compare.py: best-so-far validation accuracy against cumulative epochs, one line per study
- build.py: writes all of it into one folder

Nothing here trains, loads data or writes to the study.
"""
