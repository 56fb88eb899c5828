# Bastion: `make serve` runs a dev server, `make test` runs every check. Both build .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.PHONY: install serve test lint typecheck unit bench clean bench-peers

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so nothing else can pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[ml,llm,ray,he,rl,test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/bastion serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) chromium
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	for b in bench/[a-z]*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Peers the benchmarks compare with (Flower 1.42 and its simulation), in a git-ignored venv that
# reuses .venv's packages (torch, ray, numpy) instead of downloading a second copy.
BENCH_VENV := .bench-venv
bench-peers: $(STAMP)
	test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > $(BENCH_VENV)/.purelib
	$(BIN)/python -c 'import sysconfig; print("import site; site.addsitedir(%r)" % sysconfig.get_paths()["purelib"])' > "$$(cat $(BENCH_VENV)/.purelib)/zz_bastion_venv.pth"
	$(BENCH_VENV)/bin/python -m pip install -q 'flwr[simulation]==1.42.0'
	$(BENCH_VENV)/bin/python -c 'import flwr; print("flwr", flwr.__version__, "in $(BENCH_VENV)")'
# The dashboard's tests drive Debian's Chromium (browsers cannot be downloaded by Playwright here).
.PHONY: chromium screenshots web-assets
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; } \
	  || { sudo apt-get update && sudo apt-get install -y chromium; }

# Re-take docs/screenshots/*.png from the dashboard tests (a real server and browser).
screenshots: $(STAMP) chromium
	BASTION_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/web -q

# Re-fetch the vendored dashboard assets from the npm registry (needs npm); `--check` verifies hashes.
web-assets: $(STAMP)
	$(BIN)/python scripts/vendor_web_assets.py
	$(BIN)/python scripts/vendor_web_assets.py --check

# The OpenID provider the SSO tests start (node-oidc-provider, run with the machine's node), installed
# from the committed lock file into git-ignored tests/oidc/node_modules; re-runs only when it changes.
OIDC_DIR := tests/oidc
$(OIDC_DIR)/node_modules/.installed: $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	cd $(OIDC_DIR) && npm ci --no-audit --no-fund --silent
	touch $@
.PHONY: oidc-provider
oidc-provider: $(OIDC_DIR)/node_modules/.installed
unit: oidc-provider
