"""Treefiles: YAML in, a frozen, validated :class:`Treefile` out.

Everything is checked before any side effect: unknown keys, wrong types,
missing files and malformed names are errors whose message names the file and
the key path (``packages[3]``, ``repos[0].suites``). ``include`` files are
merged first (lists appended, mappings merged, scalars overridden by the
including file), as rpm-ostree does.
"""

from __future__ import annotations

import glob
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.core.sources import AptRepo
from apt_ostree.errors import TreefileError

PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
REF_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")  # (no "..", no "-x")
UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|target|path|mount)$")
VARIANTS = ("essential", "required", "minbase", "buildd", "important", "standard")
ARCHES = ("amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x")


@dataclass(frozen=True)
class Treefile:
    """A fully expanded and validated treefile."""

    path: Path
    ref: str
    releasever: str | None = None
    repos: tuple[AptRepo, ...] | None = None  # None: the host's own sources
    packages: tuple[str, ...] = ()
    packages_arch: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    packages_local: tuple[Path, ...] = ()
    exclude_packages: tuple[str, ...] = ()
    recommends: bool = False
    variant: str = "minbase"
    postprocess: tuple[str, ...] = ()
    postprocess_script: Path | None = None
    add_files: tuple[tuple[Path, str], ...] = ()
    remove_files: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    default_target: str | None = None
    machineid_compat: bool = True
    initramfs_args: tuple[str, ...] = ()
    add_commit_metadata: Mapping[str, Any] = field(default_factory=dict)
    automatic_version_prefix: str | None = None
    container: bool = False
    included: tuple[Path, ...] = ()

    def packages_for(self, arch: str) -> tuple[str, ...]:
        extra = self.packages_arch.get(arch, ())
        return tuple(dict.fromkeys(self.packages + extra))

    def to_json(self) -> dict[str, Any]:
        """The expanded treefile as plain data (``--print-only``, input hash); unset keys are left out."""
        data = {
            "ref": self.ref,
            "releasever": self.releasever,
            "repos": [r.to_json() for r in self.repos] if self.repos is not None else None,
            "packages": list(self.packages),
            **{f"packages-{a}": list(p) for a, p in sorted(self.packages_arch.items())},
            "packages-local": [str(p) for p in self.packages_local],
            "exclude-packages": list(self.exclude_packages),
            "recommends": self.recommends,
            "variant": self.variant,
            "postprocess": list(self.postprocess),
            "postprocess-script": str(self.postprocess_script) if self.postprocess_script else None,
            "add-files": [[str(s), d] for s, d in self.add_files],
            "remove-files": list(self.remove_files),
            "units": list(self.units),
            "default-target": self.default_target,
            "machineid-compat": self.machineid_compat,
            "initramfs-args": list(self.initramfs_args),
            "add-commit-metadata": dict(self.add_commit_metadata),
            "automatic-version-prefix": self.automatic_version_prefix,
            "container": self.container,
        }
        return {k: v for k, v in data.items() if v is not None}


# ---------------------------------------------------------------- validation


class _Ctx:
    """Where we are: the file being read, for error messages and relative paths."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, key: str, message: str, hint: str | None = None) -> TreefileError:
        return TreefileError(f"treefile {self.path}: {key}: {message}", hint)


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _str(ctx: _Ctx, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.fail(key, f"expected a non-empty string, got {_type_name(value)}")
    return value


def _bool(ctx: _Ctx, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ctx.fail(key, f"expected true or false, got {_type_name(value)}")
    return value


def _str_list(ctx: _Ctx, key: str, value: Any, check: Callable[[str, str], None] | None = None) -> list[str]:
    if isinstance(value, str):
        raise ctx.fail(key, "expected a list of strings, got a single string", hint=f"write {key}: [{value}]")
    if not isinstance(value, list):
        raise ctx.fail(key, f"expected a list of strings, got {_type_name(value)}")
    out = []
    for i, item in enumerate(value):
        item_key = f"{key}[{i}]"
        s = _str(ctx, item_key, item)
        if check is not None:
            check(item_key, s)
        out.append(s)
    return out


def _path(ctx: _Ctx, key: str, value: Any, *, must_exist: bool = True) -> Path:
    raw = _str(ctx, key, value)
    path = (ctx.base / raw).resolve() if not raw.startswith("/") else Path(raw)
    if must_exist and not path.exists():
        raise ctx.fail(key, f"file not found: {path}")
    return path


def _package_checker(ctx: _Ctx) -> Callable[[str, str], None]:
    def check(key: str, name: str) -> None:
        if not PACKAGE_RE.match(name):
            raise ctx.fail(key, f"not a Debian package name: {name!r}")
    return check


def _tree_path_checker(ctx: _Ctx) -> Callable[[str, str], None]:
    def check(key: str, path: str) -> None:
        parts = path.strip("/").split("/")
        if path.strip("/") == "" or ".." in parts:
            raise ctx.fail(key, f"not a path inside the tree: {path!r}")
    return check


def _repos(ctx: _Ctx, key: str, value: Any) -> list[AptRepo]:
    if not isinstance(value, list):
        raise ctx.fail(key, f"expected a list of APT sources, got {_type_name(value)}")
    repos = []
    for i, item in enumerate(value):
        k = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ctx.fail(k, f"expected a mapping (uris, suites, components, signed-by), got {_type_name(item)}")
        allowed = {"uris", "suites", "components", "signed-by"}
        for unknown in sorted(set(item) - allowed):
            raise ctx.fail(f"{k}.{unknown}", "unknown key", hint=f"allowed: {', '.join(sorted(allowed))}")
        if "uris" not in item:
            raise ctx.fail(f"{k}.uris", "missing")
        if "suites" not in item:
            raise ctx.fail(f"{k}.suites", "missing")
        uris = _str_list(ctx, f"{k}.uris", item["uris"])
        for j, uri in enumerate(uris):
            if not re.match(r"^(https?|file|copy|mirror\+https?)://", uri):
                raise ctx.fail(f"{k}.uris[{j}]", f"not an APT URI: {uri!r}")
        suites = _str_list(ctx, f"{k}.suites", item["suites"])
        comps = _str_list(ctx, f"{k}.components", item.get("components", ["main"]))
        signed_by = _path(ctx, f"{k}.signed-by", item["signed-by"]) if "signed-by" in item else None
        if not uris or not suites:
            raise ctx.fail(k, "needs at least one URI and one suite")
        repos.append(AptRepo(tuple(uris), tuple(suites), tuple(comps), signed_by))
    return repos


def _add_files(ctx: _Ctx, key: str, value: Any) -> list[tuple[Path, str]]:
    if not isinstance(value, list):
        raise ctx.fail(key, f"expected a list of [source, destination] pairs, got {_type_name(value)}")
    out = []
    for i, item in enumerate(value):
        k = f"{key}[{i}]"
        if not (isinstance(item, list) and len(item) == 2):
            raise ctx.fail(k, "expected a [source, destination] pair")
        src = _path(ctx, f"{k}[0]", item[0])
        dest = _str(ctx, f"{k}[1]", item[1])
        _tree_path_checker(ctx)(f"{k}[1]", dest)
        out.append((src, "/" + dest.strip("/")))
    return out


def _packages_local(ctx: _Ctx, key: str, value: Any) -> list[Path]:
    out = []
    for i, raw in enumerate(_str_list(ctx, key, value)):
        k = f"{key}[{i}]"
        pattern = raw if raw.startswith("/") else glob.escape(str(ctx.base)) + "/" + raw
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise ctx.fail(k, f"no .deb file matches {pattern}", hint="build it first (make deb)")
        for m in matches:
            if not m.endswith(".deb"):
                raise ctx.fail(k, f"not a .deb file: {m}")
            out.append(Path(m).resolve())
    return out


def _metadata(ctx: _Ctx, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.fail(key, f"expected a mapping, got {_type_name(value)}")
    for k, v in value.items():
        if not isinstance(k, str):
            raise ctx.fail(key, f"metadata keys must be strings, got {k!r}")
        if not isinstance(v, str | bool | int) or isinstance(v, float):
            raise ctx.fail(f"{key}.{k}", f"expected a string, integer or boolean, got {_type_name(v)}")
    return dict(value)


# Each key: how to convert it, and how it merges with an included value.
_LIST, _MAP, _SCALAR = "list", "map", "scalar"


def _keys(ctx: _Ctx) -> dict[str, tuple[str, Callable[[str, Any], Any]]]:
    pkg = _package_checker(ctx)

    def ref(k: str, v: Any) -> str:
        s = _str(ctx, k, v)
        if not REF_RE.match(s):
            raise ctx.fail(k, f"not a valid OSTree ref: {s!r}")
        return s

    def variant(k: str, v: Any) -> str:
        s = _str(ctx, k, v)
        if s not in VARIANTS:
            raise ctx.fail(k, f"unknown variant {s!r}", hint=f"one of: {', '.join(VARIANTS)}")
        return s

    def units(k: str, v: Any) -> list[str]:
        def check(key: str, u: str) -> None:
            if not UNIT_RE.match(u):
                raise ctx.fail(key, f"not a systemd unit name: {u!r}")
        return _str_list(ctx, k, v, check)

    def target(k: str, v: Any) -> str:
        s = _str(ctx, k, v)
        if not s.endswith(".target"):
            raise ctx.fail(k, f"not a target unit: {s!r}")
        return s

    def version_prefix(k: str, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if isinstance(v, float):
            raise ctx.fail(k, f"expected a string, got the number {v}", hint=f'quote it: {k}: "{v}"')
        return _str(ctx, k, v)

    table: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
        "ref": (_SCALAR, ref),
        "releasever": (_SCALAR, lambda k, v: _str(ctx, k, v)),
        "repos": (_LIST, lambda k, v: _repos(ctx, k, v)),
        "packages": (_LIST, lambda k, v: _str_list(ctx, k, v, pkg)),
        "packages-local": (_LIST, lambda k, v: _packages_local(ctx, k, v)),
        "exclude-packages": (_LIST, lambda k, v: _str_list(ctx, k, v, pkg)),
        "recommends": (_SCALAR, lambda k, v: _bool(ctx, k, v)),
        "variant": (_SCALAR, variant),
        "postprocess": (_LIST, lambda k, v: _str_list(ctx, k, v)),
        "postprocess-script": (_SCALAR, lambda k, v: _path(ctx, k, v)),
        "add-files": (_LIST, lambda k, v: _add_files(ctx, k, v)),
        "remove-files": (_LIST, lambda k, v: _str_list(ctx, k, v, _tree_path_checker(ctx))),
        "units": (_LIST, units),
        "default-target": (_SCALAR, target),
        "machineid-compat": (_SCALAR, lambda k, v: _bool(ctx, k, v)),
        "initramfs-args": (_LIST, lambda k, v: _str_list(ctx, k, v)),
        "add-commit-metadata": (_MAP, lambda k, v: _metadata(ctx, k, v)),
        "automatic-version-prefix": (_SCALAR, version_prefix),
        "container": (_SCALAR, lambda k, v: _bool(ctx, k, v)),
    }
    for arch in ARCHES:
        table[f"packages-{arch}"] = (_LIST, lambda k, v: _str_list(ctx, k, v, pkg))
    return table


TREEFILE_MAX = 1 << 20  # (a treefile is a few kB; more is not one: /dev/zero, a disk image)


def _strict_loader() -> type:
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently: a treefile with two `packages:` would lose the first list)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
                if not isinstance(key, str | int | float | bool):
                    continue  # (not hashable or not a treefile key: the schema rejects it)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    return StrictLoader


def _read_yaml(path: Path, ctx: _Ctx | None, key: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise TreefileError(f"treefile {path}: not a regular file")
            raw = f.read(TREEFILE_MAX + 1)
    except FileNotFoundError:
        if ctx is not None:
            raise ctx.fail(key, f"included file not found: {path}") from None
        raise TreefileError(f"treefile not found: {path}") from None
    except OSError as e:
        raise TreefileError(f"treefile {path}: cannot read: {e.strerror}") from None
    if len(raw) > TREEFILE_MAX:
        raise TreefileError(f"treefile {path}: larger than {TREEFILE_MAX >> 20} MB: not a treefile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TreefileError(f"treefile {path}: not UTF-8 text (byte {e.start})") from None
    import yaml  # here: the commands that read no treefile do not load it

    try:
        data = yaml.load(text, Loader=_strict_loader())  # (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise TreefileError(f"treefile {path}: {where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise TreefileError(f"treefile {path}: nested too deeply to be a treefile") from None
    if not isinstance(data, dict):
        raise TreefileError(f"treefile {path}: expected a mapping at the top level, got {_type_name(data)}")
    return data


def _load_merged(path: Path, stack: tuple[Path, ...], ctx_parent: _Ctx | None, key: str,
                 included: list[Path]) -> dict[str, Any]:
    """Read ``path`` with its includes; return converted values keyed by treefile key."""
    path = path.resolve()
    if path in stack:
        raise TreefileError(f"treefile {path}: include cycle: {' -> '.join(str(p) for p in (*stack, path))}")
    data = _read_yaml(path, ctx_parent, key)
    ctx = _Ctx(path)
    merged: dict[str, Any] = {}
    table = _keys(ctx)
    if "include" in data:
        raw = data["include"]
        incs = [raw] if isinstance(raw, str) else raw
        if not isinstance(incs, list):
            raise ctx.fail("include", f"expected a path or a list of paths, got {_type_name(raw)}")
        for i, inc in enumerate(incs):
            k = "include" if isinstance(raw, str) else f"include[{i}]"
            inc_path = _path(ctx, k, inc, must_exist=False)
            if not inc_path.exists():
                raise ctx.fail(k, f"included file not found: {inc_path}")
            if inc_path.resolve() in included:
                continue  # already merged through another include
            sub = _load_merged(inc_path, (*stack, path), ctx, k, included)
            included.append(inc_path.resolve())
            _merge(merged, sub, table)
    own: dict[str, Any] = {}
    for k, v in data.items():
        if k == "include":
            continue
        if not isinstance(k, str) or k not in table:
            raise ctx.fail(str(k), "unknown key", hint="see docs/treefile.md for the supported keys")
        own[k] = table[k][1](k, v)
    _merge(merged, own, table)
    return merged


def _merge(into: dict[str, Any], new: dict[str, Any], table: Mapping[str, tuple[str, Any]]) -> None:
    for k, v in new.items():
        kind = table[k][0]
        if kind == _LIST and k in into:
            into[k] = into[k] + v
        elif kind == _MAP and k in into:
            into[k] = {**into[k], **v}
        else:
            into[k] = v


def load_treefile(path: Path) -> Treefile:
    """Load, expand and validate a treefile. Raises TreefileError."""
    path = Path(path).resolve()
    included: list[Path] = []
    values = _load_merged(path, (), None, "", included)
    if "ref" not in values:
        raise TreefileError(f"treefile {path}: ref: missing",
                            hint="every treefile needs a ref, e.g. debian/bookworm/x86_64/minimal")
    packages_arch = {k.removeprefix("packages-"): tuple(v) for k, v in values.items()
                     if k.startswith("packages-") and k.removeprefix("packages-") in ARCHES}
    return Treefile(
        path=path,
        ref=values["ref"],
        releasever=values.get("releasever"),
        repos=tuple(values["repos"]) if "repos" in values else None,
        packages=tuple(dict.fromkeys(values.get("packages", []))),
        packages_arch=packages_arch,
        packages_local=tuple(dict.fromkeys(values.get("packages-local", []))),
        exclude_packages=tuple(dict.fromkeys(values.get("exclude-packages", []))),
        recommends=values.get("recommends", False),
        variant=values.get("variant", "minbase"),
        postprocess=tuple(values.get("postprocess", [])),
        postprocess_script=values.get("postprocess-script"),
        add_files=tuple(values.get("add-files", [])),
        remove_files=tuple(values.get("remove-files", [])),
        units=tuple(dict.fromkeys(values.get("units", []))),
        default_target=values.get("default-target"),
        machineid_compat=values.get("machineid-compat", True),
        initramfs_args=tuple(values.get("initramfs-args", [])),
        add_commit_metadata=values.get("add-commit-metadata", {}),
        automatic_version_prefix=values.get("automatic-version-prefix"),
        container=values.get("container", False),
        included=tuple(included),
    )


def dumps(treefile: Treefile) -> str:
    return json.dumps(treefile.to_json(), indent=2, sort_keys=True)
