# Set-up and everyday tasks.  Everything installs into .venv from setup.cfg.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DEMO = demo

.PHONY: venv demo test docs bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

# The main job: ingest a sample into a fresh embedded catalogue, dump it again.
demo: venv
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/python tools/examples.py --copy icatdump-6.2.yaml $(DEMO)/sample.yaml
	$(BIN)/icatdata init $(DEMO)/catalogue.sqlite
	$(BIN)/icatingest -w $(DEMO)/catalogue.sqlite -i $(DEMO)/sample.yaml
	$(BIN)/icatdump -w $(DEMO)/catalogue.sqlite -f XML -o $(DEMO)/dump.xml
	$(BIN)/icatdump -w $(DEMO)/catalogue.sqlite -f YAML -o $(DEMO)/dump.yaml
	$(BIN)/icatdata info $(DEMO)/dump.xml
	@echo "demo: $(DEMO)/dump.xml and $(DEMO)/dump.yaml written"

test: venv
	$(BIN)/python -m pytest -q

# The documentation site (Sphinx, Markdown pages), warnings as errors.
docs: venv
	$(BIN)/python -m sphinx -W --keep-going -b html doc doc/_build/html
	@echo "docs: doc/_build/html/index.html"

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(DEMO) .cache doc/_build
