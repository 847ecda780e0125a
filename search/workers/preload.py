"""What every worker of `search --workers N` imports, loaded once by the launcher's forkserver and shared by the
workers it forks (search/workers/launchers/local.py).

Each worker would otherwise import it afresh: about 3.4 CPU-s on a 2-core CPU, of which torch takes 2.3 s and
torch._dynamo, which torch.optim imports at the first optimizer it builds, 1.2 s. None of it starts CUDA
(tests/test_workers.py checks), so each forked worker starts CUDA itself, as PyTorch requires of forked children.
"""

import torch
import torch._dynamo  # noqa: F401  (see above: else imported by each worker's first optimizer)

import search.workers.launchers.local  # noqa: F401  (the worker's code: optuna, sqlalchemy, model, storage)
