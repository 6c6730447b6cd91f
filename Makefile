# mira-agent: every target installs what it needs first.
#   make demo    a whole spoken conversation against a local Mira server
#   make test    the whole test suite
#   make bench   the benchmark table
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian packages: build headers for pyaudio and systemd-python, speech for the
# demo and the tests, and a PulseAudio null sink for real-time audio tests.
APT_PACKAGES := python3-venv python3-dev gcc pkg-config portaudio19-dev libsystemd-dev \
	libasound2-plugins alsa-utils espeak-ng sox pulseaudio pulseaudio-utils shellcheck systemd

.PHONY: setup demo test bench devserver clean apt

setup: $(STAMP)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
		echo "mira-agent needs these Debian packages. Run this once, then run make again:"; \
		echo "  sudo apt-get install -y --no-install-recommends $$missing"; exit 1; fi; \
	echo "Installing Debian packages: $$missing"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null

$(STAMP): pyproject.toml | apt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/mira-agent demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks

devserver: setup
	$(VENV)/bin/mira-agent devserver --host 127.0.0.1 --port 8765

clean:
	rm -rf $(VENV) .demo .bench *.egg-info
