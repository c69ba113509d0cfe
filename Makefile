# apt-ostree: the two set-up commands (run as root on Debian 13 trixie or Debian 12 bookworm):
#   make demo    compose examples/trixie.yaml into _build/repo, build a disk image, boot it, layer htop,
#                reboot, show status (make demo RELEASE=bookworm: the same with Debian 12)
#   make check   the whole test suite: the unit, root and dbus tiers, and the vm tier beside them
# Both install their own Debian dependencies first (idempotently). docker-registry's own service is
# masked before it is installed: the tests start registries on 127.0.0.1 themselves.

PYTHON  := /usr/bin/python3
BUILD   := _build
VENV    := $(BUILD)/venv
VERSION := $(shell sed -n '1s/.*(\(.*\)).*/\1/p' debian/changelog)
DEB     := $(BUILD)/apt-ostree_$(VERSION)_all.deb
REPO    := $(BUILD)/repo
CACHE   := $(BUILD)/cache
RELEASE ?= trixie
REF     := debian/$(RELEASE)/x86_64/minimal
APT_OSTREE := PYTHONPATH=$(CURDIR) $(PYTHON) -m apt_ostree.cli.main

DEBIAN_DEPS := ostree gir1.2-ostree-1.0 python3-gi python3-apt python3-yaml python3-pytest \
	python3-venv bubblewrap mmdebstrap dpkg-dev debhelper dh-python fakeroot lintian \
	arch-test ca-certificates qemu-system-x86 qemu-utils grub-pc-bin grub2-common fdisk \
	openssh-client grub-efi-amd64-bin ovmf mtools dosfstools dbus-daemon systemd procps util-linux \
	skopeo umoci buildah docker-registry zstd nginx

.PHONY: all deps deb demo check lint clean completion generated

all: deb

deps:
	@missing=$$(for p in $(DEBIAN_DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing: $$missing"; \
		case " $$missing " in *" docker-registry "*) \
			systemctl mask docker-registry.service >/dev/null 2>&1 || true;; esac; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q ruff==0.8.4 mypy==1.13.0
	touch $@

deb: $(DEB)

$(DEB): $(shell git ls-files 2>/dev/null | grep -v '^tests/\|^bench/\|^examples/\|^docs/benchmarks.md')
	rm -rf $(BUILD)/pkg && mkdir -p $(BUILD)/pkg/apt-ostree-$(VERSION)
	tar --exclude=./_build --exclude=./.git --exclude=__pycache__ -cf - . \
		| tar -xf - -C $(BUILD)/pkg/apt-ostree-$(VERSION)
	cd $(BUILD)/pkg/apt-ostree-$(VERSION) && dpkg-buildpackage -us -uc -b >../build.log 2>&1 \
		|| { tail -30 ../build.log; exit 1; }
	cp $(BUILD)/pkg/apt-ostree_$(VERSION)_all.deb $@

demo: deps deb
	@mkdir -p $(BUILD)
	$(APT_OSTREE) compose tree examples/$(RELEASE).yaml --repo $(REPO) --cachedir $(CACHE) \
		--write-commitid-to $(BUILD)/commitid
	@echo "--- commit $$(cat $(BUILD)/commitid): $$($(APT_OSTREE) db list --repo $(REPO) $(REF) | tail -n +2 | wc -l) packages"
	@$(APT_OSTREE) db list --repo $(REPO) $(REF) | head -n 15
	$(PYTHON) examples/boot_demo.py $(REPO) $(REF) $(BUILD)/demo-$(RELEASE)

check: deps deb $(VENV)/.stamp
	$(PYTHON) -m tests.tiers

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check apt_ostree tests bench examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(BUILD)

# the bash completion is generated from the argument parser (a unit test checks it is current)
completion:
	PYTHONPATH=$(CURDIR) $(PYTHON) -m apt_ostree.cli.surface > completion/apt-ostree

# everything made from the verb table (apt_ostree/verbs.py): the completion, the man page's synopses,
# the D-Bus interface's transaction methods and the polkit actions (unit tests check each is current)
generated: completion
	PYTHONPATH=$(CURDIR) $(PYTHON) -m apt_ostree.cli.surface --man man/apt-ostree.8
	PYTHONPATH=$(CURDIR) $(PYTHON) -m apt_ostree.daemon.interface
