"""The Python API: read a release's records at any git revision, without a checkout.

    import cqia

    for record in cqia.load(rev="v0.1", category="zhihu"):
        print(record["id"], record["instruction"])

`rev` is a tag, branch or commit of the registry; the release is read through
DVC (``dvc.api.DVCFileSystem``): from the local DVC cache when it is there,
otherwise from the DVC remote configured at that revision. Nothing is checked
out and the working tree is not touched. `repo` is a path or git URL of the
registry (default: the repository in the current directory). With neither
`rev` nor `repo`, the release in the working tree (``data/release/``) is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import orjson

from cqia.common.errors import CqiaError, ReleaseUnavailable, did_you_mean
from cqia.common.layout import MANIFEST, RELEASE_DIR
from cqia.common.lineage import records_path

RELEASE_PATH = RELEASE_DIR.as_posix()  # where dvc.yaml's publish and merge stages write the release


class _Local:
    """A working tree, with the same calls as a DVCFileSystem."""

    def __init__(self, root: str | Path = "."):
        self.root = Path(root)

    def read_bytes(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def open(self, path: str, mode: str = "rb"):
        return open(self.root / path, mode)


def _where(rev: str | None, repo: str | None, path: str = RELEASE_PATH) -> str:
    """Where a release file is, in git's `rev:path` notation, after the repository if one was given
    (joined to it, for the working tree of a local repository: `../data/release` from data/)."""
    if repo and not rev and Path(repo).is_dir():
        return (Path(repo) / path).as_posix()
    where = f"{rev}:{path}" if rev else path
    return f"{repo} {where}" if repo else where


class Release:
    """One release at one revision: its manifest, and its records read on demand."""

    def __init__(self, rev: str | None = None, repo: str | None = None):
        self.rev, self.repo = rev, repo
        if rev is None and (repo is None or Path(repo).is_dir()):
            self._fs: Any = _Local(repo or ".")
        else:
            from dvc.api import DVCFileSystem

            self._fs = DVCFileSystem(repo, rev=rev)
        self.manifest = self._read_manifest()

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def categories(self) -> dict[str, dict[str, Any]]:
        """Per category, in release order: raw, released, rejected, rejected_by_reason."""
        return self.manifest["categories"]

    def _read_manifest(self) -> dict[str, Any]:
        path = f"{RELEASE_PATH}/{MANIFEST}"
        where = _where(self.rev, self.repo, path)
        try:
            data = self._fs.read_bytes(path)
        except FileNotFoundError:
            if isinstance(self._fs, _Local):
                raise CqiaError("no release built in this working tree", where=where,
                                fix="Run `make repro` (or `dvc repro`), or read a tagged release at its revision, "
                                    "e.g. v0.1") from None
            raise self._missing(where) from None
        except Exception as exc:  # dvc raises scm, clone and index errors; each means "cannot read there"
            raise self._unreadable(exc, where) from None
        try:
            manifest = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CqiaError(f"not valid JSON ({exc})", where=where,
                            fix="Rebuild the release (`dvc repro`); the manifest is written by the merge stage") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("categories"), dict) \
                or not isinstance(manifest.get("version"), str):
            raise CqiaError("has no 'version' and 'categories'; not a cqia-registry manifest", where=where,
                            fix="Rebuild the release (`dvc repro`)")
        return manifest

    def _missing(self, where: str) -> CqiaError:
        try:  # dvc.lock at this revision has a hash for the manifest: it was built, its files are not stored
            built = bool((self._fs.info(f"{RELEASE_PATH}/{MANIFEST}").get("dvc_info") or {}).get("md5"))
        except Exception:
            built = False
        if built:
            return ReleaseUnavailable("the release is in neither the local DVC cache nor the DVC remote configured at "
                             "this revision", where=where,
                             fix="Run `dvc push` where the release was built, with a default remote "
                                 "committed before the tag (`dvc remote add -d NAME URL`)")
        return CqiaError("no release at this revision", where=where,
                         fix="Pass a revision that has one (`git tag` lists the releases)")

    def _unreadable(self, exc: Exception, where: str) -> CqiaError:
        from dvc.scm import CloneError, RevError, SCMError

        if isinstance(exc, RevError):
            return unknown_revision(str(self.rev), self.repo, where)
        if isinstance(exc, (CloneError, SCMError)):
            return CqiaError("not a git repository, or it cannot be cloned", where=where,
                             fix="Pass the path or git URL of a cqia-registry repository")
        if type(exc).__name__ == "DataIndexDirError":  # the release directory's listing is not stored anywhere
            return self._missing(where)
        return CqiaError(f"cannot read the release ({type(exc).__name__}: {exc})", where=where)

    def path(self, category: str) -> str:
        """The release file holding `category`'s records."""
        if category not in self.categories:
            raise CqiaError(f"release {self.version} has no category {category!r}",
                            where=_where(self.rev, self.repo),
                            fix=f"{did_you_mean(category, self.categories)}Available categories: {list(self.categories)}")
        return f"{RELEASE_PATH}/{records_path(category)}"

    def count(self, category: str | None = None) -> int:
        if category is None:
            return int(self.manifest.get("released", sum(c["released"] for c in self.categories.values())))
        return int(self.categories[category]["released"])

    def open(self, path: str):
        """A binary file of the release at this revision; `path` is relative to the repository."""
        where = _where(self.rev, self.repo, path)
        try:
            return self._fs.open(path, mode="rb")
        except FileNotFoundError:
            raise self._missing(where) from None
        except Exception as exc:
            raise self._unreadable(exc, where) from None

    def records(self, category: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield the records of `category` (all when None), in release order."""
        paths = [self.path(category)] if category is not None else [self.path(c) for c in self.categories
                                                                    if self.categories[c]["released"]]
        # The revision and category are checked here, at the call; the files are opened as they are read.
        return (record for path in paths for record in _read_lines(self.open(path), _where(self.rev, self.repo, path)))


def release_tags(repo: str | Path | None = None) -> list[str]:
    """The release tags (v<major>.<minor>[.<patch>]) of a local registry, in version order;
    none when git cannot list them (a git URL, or a registry without git)."""
    from cqia.registry import releases as releasing

    if repo is not None and not Path(repo).is_dir():
        return []
    proc = releasing.run(["git", "tag", "--list"], Path(repo or "."), check=False)
    found = releasing.release_tags(proc.stdout.split()) if proc.returncode == 0 else {}
    return sorted(found, key=found.__getitem__)


def unknown_revision(rev: str, repo: str | Path | None, where: str) -> CqiaError:
    """The error for a revision git does not know, naming the release tags there are."""
    tags = release_tags(repo)
    fix = (f"{did_you_mean(rev, tags)}Release tags: {', '.join(tags)}; or pass a branch or commit" if tags else
           "Pass a tag, branch or commit of the registry; it has no release tags (v*) yet")
    return CqiaError(f"unknown revision {rev!r}", where=where, fix=fix)


def _read_lines(handle, where: str) -> Iterator[dict[str, Any]]:
    with handle:
        # Binary lines split on b"\n" only: U+2028 inside a string stays inside its record.
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CqiaError(f"line {number} is not valid JSON ({exc})", where=where,
                                fix="Rebuild the release (`dvc repro`) or pull it again (`dvc pull`)") from None


def load(rev: str | None = None, category: str | None = None, repo: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records (dicts) of a release, read through DVC at `rev` with no checkout.

    `rev`: a tag, branch or commit (None: the working tree). `category`: one source category
    (None: every record, in release order). `repo`: path or git URL of the registry (None: the
    repository in the current directory). The revision and category are checked at the call;
    a bad one raises `cqia.common.errors.CqiaError` naming the fix.

    Example:
        >>> import cqia
        >>> records = list(cqia.load(rev="v0.1", category="zhihu"))
    """
    return Release(rev=rev, repo=repo).records(category)
