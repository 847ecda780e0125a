#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what `make gpu-check` needs on the lent GPU machine, which reaches no registry:
# wheels of the Python packages its image lacks (for its Python 3.12, x86-64), CIFAR-10 as the 19 MB JPEG
# tarball with its converter, and the commit being measured. Run here, in the repo root, before the device
# call that names .gpu in `carry` (docs/gpu-check.md gives that call). About 38 MB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared/data}
# The image has torch, torchvision, numpy, matplotlib, pytest, tqdm, PyYAML, MarkupSafe, narwhals, packaging and
# typing-extensions; these are what alexsearch needs besides. Same versions as this machine's venv.
PACKAGES="optuna optuna-dashboard alembic Mako colorlog SQLAlchemy bottle plotly"
pins=$("$PY" -c 'import sys; from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in sys.argv[1:]))' $PACKAGES)
rm -rf .gpu && mkdir -p .gpu/whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl $pins
cp "$SHARED/cifar10-jpeg.tar.gz" "$SHARED/make_cifar10.py" .gpu/
git rev-parse HEAD > .gpu/COMMIT
du -sh .gpu
