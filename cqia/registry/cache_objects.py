"""Damaged DVC objects: a release file that does not match dvc.lock, traced to the object it came from.

DVC trusts its cache. An object whose bytes changed but whose size and mtime did not (a disk error, an
edit through a hard link) passes `dvc status` and `dvc repro`, and `dvc checkout` copies it back into
the workspace (DVC 3 never re-hashes a cache object on checkout, status or repro). A damaged object on
a remote is fetched by `dvc pull` without a word unless the remote has `verify = true` (the committed
remotes do): then DVC drops it after the download and the pull fails with `Checkout failed for following
targets: <output>`, naming the output, not the object. `cqia verify` hashes the release files; for one
that does not match dvc.lock, `inspect_objects` hashes the object dvc.lock names, in the local cache and
on a remote (the default one, or `--remote NAME`), and says which is damaged, so that the fix removes
that object instead of checking the same bad bytes out again. docs/troubleshooting.md#faults has the
repair, tested in tests/test_faults_e2e.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from cqia.common.errors import CqiaError


@dataclass(frozen=True)
class Damaged:
    """An object holding other bytes than the md5 it is named by."""

    file: str          # the release file it belongs to, relative to the registry root
    stage: str         # the stage that writes that file
    expected: str      # dvc.lock's md5 of the file: the object's name
    actual: str        # the md5 of what the object holds
    where: str         # "cache", or the remote's name
    path: str          # the object's path (relative to the root when under it), or its URL on a cloud remote
    local: bool        # on this machine's filesystem: `rm -f` removes it
    listing: str | None = None   # on a remote: the object listing the directory output that holds the file


def expected_md5(outs: Iterable, path: str):
    """(md5, dvc.lock's output) of the release file `path` (relative to the release directory), or None."""
    for out in outs:
        if out.is_dir and out.listing and (out.path == "" or path.startswith(out.path + "/")):
            md5 = out.listing.get(path[len(out.path) + 1:] if out.path else path)
            if md5:
                return md5, out
        elif not out.is_dir and out.path == path:
            return out.md5, out
    return None


def _md5(handle) -> str:
    digest = hashlib.md5()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _shown(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


@dataclass(frozen=True)
class Objects:
    """What `inspect_objects` found for the release files it was given."""

    damaged: list[Damaged]
    uncached: list[str]        # files (relative to the release directory) whose object is not in the cache
    remote: str | None         # the remote read, or None when none could be opened
    on_remote: list[str]       # of `uncached`: those whose object that remote holds whole


def inspect_objects(root: Path, release_dir: str, outs: Iterable, files: list[str],
                    remote: str | None = None) -> Objects:
    """The objects, in the local cache and on `remote` (default: the default remote), of the release `files`
    (relative to `release_dir`): those that do not match dvc.lock (`cqia verify`), or all of them before
    a push (`cqia release`). The remote is read only for a file whose cache object is damaged or absent."""
    from dvc.repo import Repo

    wanted = {f: found for f in files if (found := expected_md5(outs, f))}
    found = Objects([], [], None, [])
    if not wanted:
        return found
    try:
        repo = Repo(str(root))
    except Exception:  # not a DVC repository after all: no object to name (verify says what it can)
        return found
    with repo:
        stores = [("cache", repo.cache.local)]
        try:
            name = remote or repo.config["core"].get("remote") or ""
            stores.append((name, repo.cloud.get_remote_odb(name or None)))
            found = replace(found, remote=name)
        except Exception:  # no default remote, or one that cannot be opened here: the local cache only
            pass
        for file, (md5, out) in sorted(wanted.items(), key=lambda item: item[0]):
            for where, odb in stores:
                path = odb.oid_to_path(md5)
                try:
                    with odb.fs.open(path, "rb") as handle:
                        actual = _md5(handle)
                except Exception:  # not there (not pulled, not pushed) or unreadable: nothing to name
                    if where == "cache":
                        found.uncached.append(file)
                    continue
                if actual == md5:
                    if where == "cache":
                        break   # the cache is sound, so the workspace file was changed: the remote is not asked
                    found.on_remote.append(file)
                    continue
                local = odb.fs.protocol in ("local", "file")
                shown = _shown(path, root) if local else odb.fs.unstrip_protocol(path)
                # `dvc push` takes a directory whose listing the remote has as whole: that goes too
                listing = odb.oid_to_path(out.md5) if where != "cache" and out.is_dir else None
                if listing is not None:
                    listing = _shown(listing, root) if local else odb.fs.unstrip_protocol(listing)
                found.damaged.append(Damaged(f"{release_dir}/{file}", out.stage, md5, actual, where, shown, local,
                                             listing))
    return found


def damage_error(damaged: list[Damaged], before: str = "", after: str = "") -> CqiaError:
    """One line naming the first damaged object, the file it belongs to, and the repair that works
    (`before` and `after` it: what the command did not do, and what to run once it is repaired)."""
    from cqia.common.text import counted

    first = damaged[0]
    place = "DVC cache object" if first.where == "cache" else f"object on DVC remote '{first.where}'"
    message = (f"the {place} of {first.file} is damaged (it holds md5 {first.actual[:12]}, "
               f"not the {first.expected[:12]} it is named by)")
    for copy in (d for d in damaged[1:] if d.file == first.file):
        message += f", and so is its copy on DVC remote '{copy.where}' ({copy.path})"
    others = sorted({d.file for d in damaged} - {first.file})
    if others:
        message += f"; so are the objects of {counted(len(others), 'more file')} ({', '.join(others[:3])}" \
                   f"{', ...' if len(others) > 3 else ''})"
    stages = " ".join(sorted({d.stage for d in damaged}))
    local = sorted({p for d in damaged if d.local for p in (d.path, d.listing) if p})
    cloud = sorted({p for d in damaged if not d.local for p in (d.path, d.listing) if p})
    steps = [f"`rm -f {' '.join(local)}`"] if local else []
    steps += [f"delete {' '.join(cloud)} with the remote's own tool"] if cloud else []
    steps += [f"`dvc repro --force {stages}` (it writes the same bytes again)"]
    if any(d.where != "cache" for d in damaged):
        steps += ["`dvc push`"]
    repair = f"emove {'them' if len(damaged) > 1 else 'it'} and rebuild: " + ", then ".join(steps)
    return CqiaError(message, where=first.path,
                     fix=f"{before}{'r' if before else 'R'}{repair}" + (f", then {after}" if after else ""))


def uncached_fix(found: Objects, stages: str) -> str:
    """What to do when files that do not match have no object in the DVC cache, so that `dvc checkout` cannot
    restore them: they were never pulled, or a `dvc pull` from a remote with `verify = true` found that
    remote's copy damaged and dropped it."""
    from cqia.registry.releases import name_some

    files, it = name_some(found.uncached), "it" if len(found.uncached) == 1 else "them"
    if found.remote and set(found.uncached) <= set(found.on_remote):
        return (f"the DVC cache has no object for {files}, and DVC remote '{found.remote}' holds {it} whole: "
                f"`dvc pull -r {found.remote} {stages}`")
    nor = f" nor DVC remote '{found.remote}'" if found.remote else ""
    return (f"neither the DVC cache{nor} has an object for {files}: pull {it} from a remote that has {it} "
            f"(`dvc pull -r NAME {stages}`; if that fails with `Checkout failed`, `cqia verify --remote NAME` "
            f"names the damaged object there), or rebuild {it} with `dvc repro --force {stages}`")
