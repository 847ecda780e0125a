# alexsearch: every target installs first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# make search: DATA is the folder holding cifar-10-batches-py/ (downloaded there when missing and
# DOWNLOAD=--download); TRIALS and EPOCHS set the budget; SEARCH_ARGS passes any other option.
DATA ?= data
DOWNLOAD ?= --download
TRIALS ?= 20
EPOCHS ?= 10
STORAGE ?= sqlite:///alexsearch.db
STUDY ?= alexnet-cifar10
SEARCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install search test status dashboard bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,postgres]'
	touch $@

search: install
	$(BIN)/alexsearch search --storage $(STORAGE) --study $(STUDY) --data $(DATA) $(DOWNLOAD) \
		--trials $(TRIALS) --epochs $(EPOCHS) $(SEARCH_ARGS)

status: install
	$(BIN)/alexsearch status --storage $(STORAGE) --study $(STUDY)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
