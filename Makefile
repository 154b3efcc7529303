# The kit's commands. `make lab` and `make test` set up whatever is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# The distro's python3: BCC is installed for it, and the venv sees it through system site-packages.
SYSTEM_PYTHON := /usr/bin/python3

.PHONY: setup provision lab test fuzz-python test-refusals test-distro test-kernel bench browser-times doctor reset progress clean

provision:
	$(SUDO) bash scripts/provision.sh

setup: provision $(VENV)/.installed

$(VENV)/.installed: pyproject.toml jupyter/overrides.json jupyter/jupyter_server_config.json jupyter/page_config.json \
		$(wildcard jupyter/bpf-highlight/labextension/*)
	[ -x $(PY) ] || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# PYTHONWARNINGS: setuptools warns on every editable install, through --quiet.
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --ignore-installed -e '.[dev]'
	# JupyterLab's defaults for the lessons: no news pop-up, notebooks listed before other files.
	install -D -m 0644 jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	# The file browser lists the lessons, not solutions/ (JupyterLab lists folders first): each
	# exercise links to its solution, which opens by its path as before. The websockets' ping timeout
	# is their ping interval (30 s): jupyter_server's default, three intervals, makes tornado warn on
	# every connection, in the terminal under the lab's URL.
	install -D -m 0644 jupyter/jupyter_server_config.json $(VENV)/etc/jupyter/jupyter_server_config.json
	# No "build" check or prompt: the kit's one extension comes prebuilt, and without Node the check
	# only warns in the terminal, under the lab's URL, each time a notebook page opens.
	install -D -m 0644 jupyter/page_config.json $(VENV)/etc/jupyter/labconfig/page_config.json
	# %%bpf cells highlighted as C: a prebuilt extension (built by jupyter/bpf-highlight/build.sh), no Node.
	rm -rf $(VENV)/share/jupyter/labextensions/bpfkit-bpf-highlight
	cp -r jupyter/bpf-highlight/labextension $(VENV)/share/jupyter/labextensions/bpfkit-bpf-highlight
	touch $@

doctor: setup
	$(SUDO) $(PY) -m bpfkit doctor

# The lessons back as shipped (a copy of the learner's kept in notebooks/.backup) and whatever the
# kit left in the kernel freed; `make progress` shows which exercises are solved.
reset: setup
	$(SUDO) $(PY) -m bpfkit reset

progress: setup
	$(PY) -m bpfkit progress

# JupyterLab on the lessons, on this machine only (127.0.0.1), with a token. The server runs as
# you; its notebook kernels run BPF as root through the bpfkit kernelspec (see scripts/lab.sh).
lab: setup
	VENV=$(abspath $(VENV)) bash scripts/lab.sh

# Each notebook's outcome on this kernel goes to build/kernels/host.json, for the lesson x kernel
# table (python tests/kernel_table.py build/kernels/*.json).
test: setup
	$(SUDO) bash scripts/provision.sh --test-tools
	mkdir -p build/kernels && $(PY) tests/kernel_table.py --about > build/kernels/host.json
	$(SUDO) env BPFKIT_NOTEBOOK_REPORT=$(abspath build/kernels/host.json) $(PY) -m pytest

# The Python-side fuzzer's long run (tests/fuzz_python.py; `make test` runs a fixed-seed slice):
# random Map, create_map, pin, reader, libbpf-object and socket steps in worker processes; each
# crash, raw error, leak or write to the wrong map is printed minimised, with its seed.
FUZZ_SEED ?= 1
FUZZ_OPS ?= 20000
FUZZ_WORKERS ?= 4
fuzz-python: setup
	$(SUDO) $(PY) -m tests.fuzz_python --seed $(FUZZ_SEED) --ops $(FUZZ_OPS) --workers $(FUZZ_WORKERS) \
		--out build/fuzz-python.json

# Every lesson run with each map type and program type it uses refused (BPFKIT_PRETEND_REFUSED), as
# a kernel may refuse it: each must run to its end and say what was refused; and each cell's
# `# needs:` line checked against what the cell made (tests/test_refusal_matrix.py).
test-refusals: setup
	$(SUDO) $(PY) -m pytest -m refusals -rP tests/test_refusal_matrix.py

# The same `make test`, from a bare root file system of another Debian release (debootstrap, cached),
# on this machine's kernel: DIST is a Debian suite (trixie, bookworm, ...). See scripts/test-distro.sh.
DIST ?= trixie
test-distro:
	$(SUDO) bash scripts/test-distro.sh $(DIST)

# The lessons on a Debian release's own kernel, in a qemu VM built from Debian's packages (cached in
# /var/cache/bpfkit/vm), provisioned as the Vagrantfile provisions: see scripts/test-kernel.sh.
# WHAT=lessons (each lesson once: what CI runs), all (lessons and solutions, twice, and every
# lesson's kernel tests) or a pytest -k expression over notebook ids; ARCH=arm64 emulates an arm64 VM.
ARCH ?= amd64
WHAT ?= lessons
test-kernel:
	$(SUDO) env DIST=$(DIST) ARCH=$(ARCH) WHAT='$(WHAT)' bash scripts/test-kernel.sh

bench: setup
	$(SUDO) $(PY) benchmarks/run.py

# Every lesson's Run All in a real browser (headless Chromium through JupyterLab's menu), timed:
# the numbers for docs/instructor.md, on this machine. Written to build/screenshots/run_all_times.txt.
browser-times: setup
	$(SUDO) bash scripts/provision.sh --test-tools
	rm -f build/screenshots/run_all_times.txt
	$(SUDO) env BPFKIT_BROWSER_ALL=1 $(PY) -m pytest -q tests/test_browser.py -k every_lesson
	cat build/screenshots/run_all_times.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
