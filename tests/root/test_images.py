"""Bootable container images: compose container-encapsulate and lint, checked with skopeo and umoci;
a real registry (Debian's docker-registry on 127.0.0.1); rebase, upgrade, layering and rollback of
image-based deployments on sysroot directories; a derived image built by buildah from a
Containerfile whose RUN is apt-ostree install (container mode)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import Sysroot
from tests.conftest import EPOCH, MINIMAL, Composed, apt_ostree, error_lines
from tests.debrepo import SignedRepo
from tests.images import VAR_RUN, build_derived
from tests.root.conftest import trust
from tests.root.test_deployments import derive

pytestmark = pytest.mark.root

TAG = "13"


@dataclass(frozen=True)
class Image:
    layout: Path
    ref: str  # oci:DIR:TAG
    digest: str


def skopeo(*args: str, env: dict[str, str] | None = None) -> str:
    conf = (env or {}).get("CONTAINERS_REGISTRIES_CONF")
    return subprocess.run(["skopeo", *(["--registries-conf", conf] if conf else []), *args], check=True,
                          capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout


def encapsulate(repo: Path, rev: str, imgref: str, *extra: str, env: dict[str, str] | None = None) -> str:
    out = apt_ostree("compose", "container-encapsulate", "--repo", repo, rev, imgref, *extra, env=env).stdout
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("Digest:"))


@pytest.fixture(scope="session")
def image(minimal: Composed, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The minimal commit as an OCI image layout (oci:DIR:13)."""
    layout = tmp_path_factory.mktemp("image") / "oci"
    ref = f"oci:{layout}:{TAG}"
    return Image(layout, ref, encapsulate(minimal.repo, minimal.checksum, ref))


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    env: dict[str, str]  # CONTAINERS_REGISTRIES_CONF: plain HTTP for it


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry (distribution), on a free port of 127.0.0.1 only."""
    work = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"127.0.0.1:{port}"
    (work / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}\n")
    (work / "registries.conf").write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    proc = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=open(work / "registry.log", "w"))  # noqa: SIM115
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield Registry(host, {"CONTAINERS_REGISTRIES_CONF": str(work / "registries.conf")})
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def status(root: Path) -> list[dict[str, object]]:
    return json.loads(apt_ostree("status", "--sysroot", root, "--json").stdout)["deployments"]


def sysroot_of(root: Path, repo: Path, checksum: str, refspec: str) -> Path:
    """A sysroot directory with one deployment of ``checksum`` (only its objects pulled)."""
    root.mkdir()
    s = Sysroot(root)
    s.initialize("debian")
    s.repo().pull_local(Repo.open(repo), checksum)
    s.repo().set_ref(None, refspec, checksum)
    s.deploy_first("debian", checksum, refspec, ["root=LABEL=ostree-root", "rw"])
    return root


def test_the_image_is_what_bootc_and_container_tools_read(minimal: Composed, image: Image, tmp_path: Path) -> None:
    manifest = json.loads(skopeo("inspect", "--raw", image.ref))
    config = json.loads(skopeo("inspect", "--config", "--raw", image.ref))
    labels = config["config"]["Labels"]
    assert labels["containers.bootc"] == "1" and labels["ostree.bootable"] == "true"
    assert labels["ostree.commit"] == minimal.checksum
    assert labels["ostree.final-diffid"] == config["rootfs"]["diff_ids"][-1]
    assert labels["ostree.linux"] and labels["org.opencontainers.image.version"]
    assert manifest["annotations"] == labels  # (the same map as manifest annotations)
    layers = manifest["layers"]
    assert 4 < len(layers) <= 64 and config["architecture"] == "amd64"
    assert "ostree.components" not in layers[0].get("annotations", {})  # the commit layer first
    components = [layer["annotations"]["ostree.components"] for layer in layers[1:]]
    assert any("linux-image-amd64" in c.split(",") for c in components)
    assert any(set(c.split(",")) >= {"libsystemd0", "systemd"} for c in components)  # by source package
    # umoci unpacks it as a root file system: /etc (not /usr/etc), hard links into the repository
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{image.layout}:{TAG}", str(bundle)], check=True,
                   capture_output=True)
    rootfs = bundle / "rootfs"
    assert (rootfs / "etc/os-release").is_symlink() and not (rootfs / "usr/etc").exists()
    assert (rootfs / "usr/bin/bash").stat().st_nlink >= 2
    assert (rootfs / "sysroot/ostree/repo/config").read_text().endswith("mode=bare-split-xattrs\n")
    assert (rootfs / "var/tmp").stat().st_mode & 0o1777 == 0o1777


def test_lint_and_what_is_refused(minimal: Composed, tmp_path: Path) -> None:
    assert "no lint problems" in apt_ostree("compose", "lint", "--repo", minimal.repo, minimal.checksum).stdout
    repo = tmp_path / "repo"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare"], check=True)
    subprocess.run(["ostree", "pull-local", f"--repo={repo}", str(minimal.repo), minimal.checksum], check=True,
                   capture_output=True)
    bad = derive(repo, "test/bad", "bad", {"boot/leftover": "x", "etc/hostname": "both\n", "run/x": "x"}, tmp_path,
                 base=minimal.checksum)
    lint = apt_ostree("compose", "lint", "--repo", repo, bad, check=False)
    assert lint.returncode == 1
    assert {line.split(":")[0] for line in lint.stdout.splitlines()} >= {"nonempty-boot", "etc-usretc",
                                                                          "nonempty-run-tmp"}
    before = sorted(p.name for p in (repo / "objects").rglob("*"))
    target = tmp_path / "refused"
    cli = apt_ostree("compose", "container-encapsulate", "--repo", repo, bad, f"oci:{target}", check=False)
    assert cli.returncode == 1 and "not a bootable base image" in error_lines(cli)[0]
    assert not target.exists() and sorted(p.name for p in (repo / "objects").rglob("*")) == before
    for args, words in ((["--max-layers", "0"], "--max-layers"), (["--label", "=x"], "label")):
        cli = apt_ostree("compose", "container-encapsulate", "--repo", repo, minimal.checksum, f"oci:{target}",
                         *args, check=False)
        assert cli.returncode == 2 and words in cli.stderr.splitlines()[-1] and not target.exists()
    cli = apt_ostree("compose", "container-encapsulate", "--repo", repo, minimal.checksum, "docker:/x", check=False)
    assert cli.returncode == 2 and "not a container image reference" in error_lines(cli)[0]


def test_rebase_to_the_image_round_trip_layering_rollback(minimal: Composed, image: Image, aot_repo: SignedRepo,
                                                         tmp_path: Path) -> None:
    """A sysroot on another commit (the image's commit object absent) rebases to the image: every
    layer fetched, the commit written back with its checksum; then it behaves as a ref-based one."""
    work = Repo.open(minimal.repo)
    assert work.resolve(minimal.checksum)
    repo = tmp_path / "repo"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare"], check=True)
    subprocess.run(["ostree", "pull-local", f"--repo={repo}", str(minimal.repo), minimal.checksum], check=True,
                   capture_output=True)
    other = derive(repo, "test/os", "13.1", {"usr/share/apt-ostree-test/other": "x\n"}, tmp_path,
                   base=minimal.checksum)
    root = trust(sysroot_of(tmp_path / "sysroot", repo, other, "test/os"), aot_repo)  # (/etc merges onward)
    imgref = f"ostree-unverified-image:{image.ref}"
    out = apt_ostree("rebase", "--sysroot", root, imgref).stdout
    assert f"Image: {imgref} ({image.digest})" in out
    assert "Fetched " in out and " layers: " in out
    d = status(root)[0]
    assert d["checksum"] == minimal.checksum  # the round trip keeps the commit
    assert d["container-image-reference"] == imgref and d["container-image-reference-digest"] == image.digest
    assert d["origin"] is None
    origin = (root / "ostree/deploy/debian/deploy" / f"{d['checksum']}.0.origin").read_text()
    assert f"container-image-reference={imgref}" in origin and "refspec" not in origin
    subprocess.run(["ostree", "fsck", f"--repo={root}/ostree/repo"], check=True, capture_output=True)
    human = apt_ostree("status", "--sysroot", root).stdout
    assert f"  {imgref}\n" in human and f"Digest: {image.digest}" in human
    # nothing new: --check fetches the manifest only; upgrade exits 77 with --unchanged-exit-77
    assert "No upgrade available." in apt_ostree("upgrade", "--sysroot", root, "--check").stdout
    assert apt_ostree("upgrade", "--sysroot", root, "--unchanged-exit-77", check=False).returncode == 77
    # a bad reference changes nothing
    cli = apt_ostree("rebase", "--sysroot", root, "ostree-unverified-image:oci:/nonexistent:x", check=False)
    assert cli.returncode == 1 and "oci:/nonexistent:x" in error_lines(cli)[0] and len(status(root)) == 2
    # layering on the image, then rollback to the ref-based deployment
    apt_ostree("install", "--sysroot", root, "aot-hello")
    d = status(root)[0]
    assert d["container-image-reference"] == imgref and d["packages"] == ["aot-hello"]
    assert d["base-checksum"] == minimal.checksum
    apt_ostree("rollback", "--sysroot", root)
    assert status(root)[0]["checksum"] != d["checksum"]


def test_registry_update_fetches_only_the_changed_layers(minimal: Composed, minimal_extra: Composed,
                                                         registry: Registry, tmp_path: Path) -> None:
    """Two composes one package (htop) apart, pushed to the same tag: the second manifest differs from
    the first by the commit layer and the layer of the new packages; upgrade fetches just those."""
    name = f"docker://{registry.host}/debian:{TAG}"
    first = encapsulate(minimal.repo, minimal.checksum, name, "--label", "org.example.role=server", "--copymeta",
                        "version", "--cmd", "/sbin/init", env=registry.env)
    config = json.loads(skopeo("inspect", "--config", "--raw", name, env=registry.env))["config"]
    assert config["Labels"]["org.example.role"] == "server" and config["Labels"]["version"]
    assert config["Cmd"] == ["/sbin/init"]
    root = sysroot_of(tmp_path / "sysroot", minimal.repo, minimal.checksum, "test/os")
    imgref = f"ostree-unverified-registry:{registry.host}/debian:{TAG}"
    apt_ostree("rebase", "--sysroot", root, imgref, env=registry.env)
    assert status(root)[0]["container-image-reference-digest"] == first
    old = json.loads(skopeo("inspect", "--raw", name, env=registry.env))
    second = encapsulate(minimal_extra.repo, minimal_extra.checksum, name, env=registry.env)
    new = json.loads(skopeo("inspect", "--raw", name, env=registry.env))
    assert second != first
    old_digests = {layer["digest"] for layer in old["layers"]}
    changed = [layer for layer in new["layers"] if layer["digest"] not in old_digests]
    assert changed[0] is new["layers"][0]  # the commit layer
    assert len(changed) == 2 and "htop" in changed[1]["annotations"]["ostree.components"].split(",")
    assert "Available" in apt_ostree("upgrade", "--sysroot", root, "--check", env=registry.env).stdout
    out = apt_ostree("upgrade", "--sysroot", root, env=registry.env).stdout
    fetched = sum(layer["size"] for layer in changed)
    assert f"Fetched 2 of {len(new['layers'])} layers: {fetched / 1e6:.1f} MB" in out, out
    d = status(root)[0]
    assert d["checksum"] == minimal_extra.checksum and d["container-image-reference-digest"] == second
    assert (root / "ostree/deploy/debian/deploy" / f"{d['checksum']}.0/usr/bin/htop").exists()


def test_a_derived_image_built_by_buildah_deploys(minimal: Composed, image: Image, tmp_path: Path) -> None:
    """FROM our image, RUN apt-ostree install hello, RUN apt-ostree uninstall less (container mode: no
    sysroot, no daemon), RUN writing to /var: the new layers are applied to the image's commit (the
    removal's whiteouts too); the package is the image's own, not layered; /var's content is in
    /usr/share/factory/var and tmpfiles.d, APT's logs and caches dropped. Its zstd copy gives the same tree."""
    dest = f"oci:{tmp_path / 'derived'}:1"
    log = build_derived(image.ref, ["hello"], dest, tmp_path / "buildah", remove=["less"], run=VAR_RUN)
    assert "Changed this container's root" in log
    root = sysroot_of(tmp_path / "sysroot", minimal.repo, minimal.checksum, "test/os")
    out = apt_ostree("rebase", "--sysroot", root, f"ostree-unverified-image:{dest}").stdout
    layers = len(json.loads(skopeo("inspect", "--raw", dest))["layers"])
    assert f"Fetched 1 of {layers} layers" in out, out  # (only the new layer: buildah squashes RUNs)
    d = status(root)[0]
    assert [p.split()[0] for p in d["image-derived-packages"]] == ["hello"] and d["packages"] == []
    deployment = root / "ostree/deploy/debian/deploy" / f"{d['checksum']}.0"
    assert (deployment / "usr/bin/hello").is_file() and not (deployment / "usr/bin/less").exists()
    assert "hello" in (deployment / "usr/share/dpkg/database/status").read_text()
    assert not (deployment / "usr/etc/resolv.conf").exists()  # (buildah's empty placeholder dropped)
    assert not list((deployment / "var").iterdir())
    factory = deployment / "usr/share/factory/var/lib/aot-state/file"
    assert factory.read_text() == "kept\n" and (factory.stat().st_uid, factory.stat().st_gid) == (1, 1)
    tmpfiles = (deployment / "usr/lib/tmpfiles.d/apt-ostree-image-var.conf").read_text()
    assert "d /var/lib/aot-state 0750 root root -" in tmpfiles, tmpfiles
    assert "C /var/lib/aot-state/file - - - - /usr/share/factory/var/lib/aot-state/file" in tmpfiles
    assert "/var/log/" not in tmpfiles and "/var/cache/apt" not in tmpfiles
    assert Repo.open(root / "ostree/repo").commit(str(d["checksum"])).parent == minimal.checksum
    assert "ImagePackages: hello" in apt_ostree("status", "--sysroot", root).stdout
    # the same image with zstd layers (new blob digests: the derived layer is fetched again, through zstd(1))
    zstd = f"oci:{tmp_path / 'derived-zstd'}:1"
    skopeo("copy", "--dest-compress-format", "zstd", dest, zstd)
    out = apt_ostree("rebase", "--sysroot", root, f"ostree-unverified-image:{zstd}").stdout
    assert f"Fetched 1 of {layers} layers" in out, out
    z = status(root)[0]
    repo = Repo.open(root / "ostree/repo")
    assert z["checksum"] != d["checksum"] and repo.tree_checksum(z["checksum"], "/") == repo.tree_checksum(
        d["checksum"], "/")


def test_an_image_whose_commit_is_signed_for_a_remote(minimal: Composed, image: Image, aot_repo: SignedRepo,
                                                     tmp_path: Path) -> None:
    """ostree-remote-image:REMOTE:… deploys only a commit signed by a key of REMOTE (the signature
    travels in the image as the commit's detached metadata, and is fetched when the commit is here
    unsigned); an unsigned one is refused before anything is written. ostree-image-signed: is refused
    with the reason."""
    repo = tmp_path / "repo"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare"], check=True)
    subprocess.run(["ostree", "pull-local", f"--repo={repo}", str(minimal.repo), minimal.checksum], check=True,
                   capture_output=True)
    gnupg = aot_repo.path.parent / "gnupg"
    listing = subprocess.run(["gpg", "--homedir", str(gnupg), "--list-secret-keys", "--with-colons"], check=True,
                             capture_output=True, text=True).stdout
    key = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    subprocess.run(["ostree", "gpg-sign", f"--repo={repo}", minimal.checksum, key, f"--gpg-homedir={gnupg}"],
                   check=True, capture_output=True)
    subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False, capture_output=True)
    signed = f"oci:{tmp_path / 'signed'}:1"
    encapsulate(repo, minimal.checksum, signed)
    other = derive(repo, "test/os", "13.1", {"usr/share/apt-ostree-test/other": "x\n"}, tmp_path,
                   base=minimal.checksum)
    root = sysroot_of(tmp_path / "sysroot", repo, other, "test/os")
    sysrepo = root / "ostree/repo"
    subprocess.run(["ostree", "remote", "add", f"--repo={sysrepo}", f"--gpg-import={aot_repo.keyring}", "signer",
                    "file:///nonexistent"], check=True)
    cli = apt_ostree("rebase", "--sysroot", root, f"ostree-remote-image:signer:{image.ref}", check=False)
    assert cli.returncode == 1 and "is not signed for remote signer" in error_lines(cli)[0]
    assert len(status(root)) == 1 and not [r for r in Repo.open(sysrepo).refs() if r.startswith("ostree/container")]
    assert subprocess.run(["ostree", "show", f"--repo={sysrepo}", minimal.checksum], capture_output=True
                          ).returncode != 0  # (the transaction was aborted: no commit object)
    cli = apt_ostree("rebase", "--sysroot", root, f"ostree-image-signed:{signed}", check=False)
    assert cli.returncode == 1 and "policy.json" in error_lines(cli)[0] and len(status(root)) == 1
    # the commit here already, unsigned (pulled from elsewhere): the commit layer brings its signature
    subprocess.run(["ostree", "pull-local", f"--repo={sysrepo}", str(minimal.repo), minimal.checksum], check=True,
                   capture_output=True)
    imgref = f"ostree-remote-image:signer:{signed}"
    out = apt_ostree("rebase", "--sysroot", root, imgref).stdout
    assert "Fetched 1 of " in out, out
    d = status(root)[0]
    assert d["checksum"] == minimal.checksum and d["container-image-reference"] == imgref


def test_compose_image_gives_the_same_image(minimal: Composed, image: Image, cachedir: Path, tmp_path: Path) -> None:
    """compose image: the treefile composed (unchanged here: the session's commit), then encapsulated; the
    same commit and options give the same manifest digest, here in an oci-archive."""
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-al", str(minimal.repo), str(repo)], check=True)  # (the shared ref stays put)
    archive = tmp_path / "image.ociarchive"
    out = apt_ostree("compose", "image", MINIMAL, f"oci-archive:{archive}", "--repo", repo, "--cachedir",
                     cachedir, "--source-date-epoch", EPOCH).stdout
    commit = next(line.split()[-1] for line in out.splitlines() if line.startswith("Commit: "))
    digest = json.loads(skopeo("inspect", f"oci-archive:{archive}"))["Digest"]
    assert digest == image.digest or commit != minimal.checksum  # (a mirror update between the composes)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # (no temporary file left)
    # the archive deploys (its commit is here already: no layer fetched)
    root = sysroot_of(tmp_path / "sysroot", repo, commit, "test/os")
    imgref = f"ostree-unverified-image:oci-archive:{archive}"
    assert "Fetched no layers" in apt_ostree("rebase", "--sysroot", root, imgref).stdout
    assert status(root)[0]["container-image-reference"] == imgref
    cli = apt_ostree("compose", "container-encapsulate", "--repo", repo, commit, f"oci:{tmp_path}/x", "--copymeta",
                     "no-such-key", check=False)
    assert cli.returncode == 1 and "no-such-key" in error_lines(cli)[0] and not (tmp_path / "x").exists()
