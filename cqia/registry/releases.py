"""Releases: version checks, the tag message, and verifying a release's bytes.

A release is a git tag on a commit whose `dvc.lock` pins the release
directory (the `merge` stage's output) and whose data is on a DVC remote.
The functions at the top are pure (strings and dicts in, strings and dicts
out); the ones under "git and DVC" at the bottom run `git` or open the DVC
repository, and are what `cqia release` and `cqia verify` are made of.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from cqia.common.errors import CqiaError
from cqia.common.layout import MANIFEST

VERSION_RE = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?")  # used with fullmatch
VERSION_FORM = "v<major>.<minor>[.<patch>], e.g. v0.2 or v1.0.1"
LOCK_FILE = "dvc.lock"
PARAMS_FILE = "params.yaml"


# --------------------------------------------------------------------------- versions and tags


def parse_version(text: str, where: str | None = None) -> tuple[int, int, int]:
    """`v0.2` -> (0, 2, 0); anything else is a one-line error."""
    match = VERSION_RE.fullmatch(text or "")
    if not match:
        raise CqiaError(f"version {text!r} is malformed", where=where, fix=f"Use {VERSION_FORM}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def release_tags(tags: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """The tags that name a release version, with their parsed versions."""
    return {tag: parse_version(tag) for tag in tags if VERSION_RE.fullmatch(tag)}


def conflicting_tag(tags: Iterable[str], version: str) -> str | None:
    """An existing tag that is `version`, or names the same version (v0.1 and v0.1.0)."""
    wanted = parse_version(version)
    found = release_tags(tags)
    if version in found:
        return version
    return next((tag for tag, parsed in sorted(found.items()) if parsed == wanted), None)


def previous_release(tags: Iterable[str], version: str) -> str | None:
    """The highest release tag below `version` (v0.1.1 after v0.2 compares with v0.1)."""
    wanted = parse_version(version)
    older = [(parsed, tag) for tag, parsed in release_tags(tags).items() if parsed < wanted]
    return max(older)[1] if older else None


# --------------------------------------------------------------------------- params.yaml


def set_version_text(text: str, version: str, where: str = PARAMS_FILE) -> str:
    """params.yaml's text with `release.version` set to `version`, nothing else touched.

    ruamel's round-trip loader finds the line and column of the value; only
    that scalar is replaced, so comments, quoting and folded text elsewhere
    stay byte for byte. The result is re-read to prove that only the version
    changed.
    """
    from ruamel.yaml import YAML

    data = _load_yaml(text, where, YAML())
    release = data.get("release") if isinstance(data, dict) else None
    if not isinstance(release, dict) or "version" not in release:
        raise CqiaError("release.version is missing", where=where,
                        fix="Add `version: v0.1` under `release:`")
    line_no, col = release.lc.value("version")
    lines = text.splitlines(keepends=True)
    line = lines[line_no]
    scalar = re.match(r"'[^'\n]*'|\"[^\"\n]*\"|[^\s#]+", line[col:])
    if not scalar or isinstance(release["version"], (dict, list)):
        raise CqiaError("release.version is not a plain string", where=f"{where}:{line_no + 1}",
                        fix="Write it on one line, e.g. `version: v0.1`")
    lines[line_no] = line[:col] + version + line[col + scalar.end():]
    new_text = "".join(lines)

    safe = YAML(typ="safe", pure=True)
    before, after = _load_yaml(text, where, safe), _load_yaml(new_text, where, safe)
    before["release"]["version"] = version
    if after != before:
        raise CqiaError(f"release.version {release['version']!r} cannot be replaced on its own",
                        where=f"{where}:{line_no + 1}", fix="Write it as one word, e.g. `version: v0.1`")
    return new_text


def params_differ_only_in_version(old_text: str, new_text: str) -> bool:
    from ruamel.yaml import YAML

    safe = YAML(typ="safe", pure=True)
    try:
        old, new = safe.load(old_text), safe.load(new_text)
    except Exception:
        return False
    for data in (old, new):
        if isinstance(data, dict) and isinstance(data.get("release"), dict):
            data["release"].pop("version", None)
    return old == new


def _load_yaml(text: str, where: str, yaml) -> Any:
    try:
        return yaml.load(text)
    except Exception as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CqiaError(f"not valid YAML ({getattr(exc, 'problem', exc)})",
                        where=f"{where}:{mark.line + 1}" if mark else where, fix="Fix the YAML syntax") from None


# --------------------------------------------------------------------------- the working tree


def porcelain_paths(output: str) -> list[str]:
    """Paths in `git status --porcelain=v1 -z` output (both sides of a rename)."""
    fields = output.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":  # a rename or copy is followed by its source path
            paths.append(fields[i])
            i += 1
    return paths


@dataclass(frozen=True)
class BuildFiles:
    """The git-tracked files `dvc repro` writes: what a release commits."""

    lock_files: frozenset[str]       # dvc.lock
    uncached: frozenset[str]         # outputs with `cache: false` (metrics, plots): files or directories
    gitignores: frozenset[str]       # .gitignore files DVC writes next to cached outputs

    def __contains__(self, path: str) -> bool:
        return (path in self.lock_files or path in self.gitignores
                or any(path == out or path.startswith(out + "/") for out in self.uncached))


def build_files(outs: Iterable[tuple[str, bool]]) -> BuildFiles:
    """From (output path, cached?) pairs: the files a build may change in git."""
    uncached, gitignores = set(), set()
    for path, cached in outs:
        if cached:
            gitignores.add(posixpath.join(posixpath.dirname(path), ".gitignore"))
        else:
            uncached.add(path.rstrip("/"))
    return BuildFiles(frozenset({LOCK_FILE}), frozenset(uncached), frozenset(gitignores))


def uncommitted_changes(changed: Iterable[str], build: BuildFiles, params_version_only: bool) -> list[str]:
    """Changed paths that make the tree dirty for a release.

    What `dvc repro` itself writes (dvc.lock, metrics, DVC's .gitignore files)
    does not count: the release rebuilds and commits it. params.yaml counts
    unless `release.version` is all that changed.
    """
    dirty = []
    for path in changed:
        if path in build:
            continue
        if path == PARAMS_FILE and params_version_only:
            continue
        dirty.append(path)
    return sorted(set(dirty))


def name_some(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


# --------------------------------------------------------------------------- dvc.lock


@dataclass(frozen=True)
class LockOut:
    """One output of dvc.lock inside the release directory."""

    path: str                               # relative to the release directory ("" for the directory itself)
    md5: str                                # a file's md5, or a directory's "<md5>.dir"
    stage: str
    listing: dict[str, str] | None = None   # a directory's per-file md5s (relative to it), when known

    @property
    def is_dir(self) -> bool:
        return self.md5.endswith(".dir")


def lock_outs(lock: Any, release_dir: str, where: str = LOCK_FILE) -> list[LockOut]:
    """The dvc.lock entries of every output in `release_dir` (the publish stages' and merge's), by path."""
    stages = lock.get("stages") if isinstance(lock, dict) else None
    found = []
    for stage, entry in (stages or {}).items():
        for item in (entry or {}).get("outs") or []:
            path = str(item.get("path", ""))
            if path != release_dir and not path.startswith(release_dir + "/"):
                continue
            if not item.get("md5"):
                raise CqiaError(f"output {path} has no hash", where=f"{where}: stages.{stage}",
                                fix="Run `dvc repro` to rebuild the release")
            found.append(LockOut("" if path == release_dir else path[len(release_dir) + 1:], str(item["md5"]), stage))
    if not found:
        raise CqiaError(f"no stage has an output in {release_dir}", where=where,
                        fix="Run `dvc repro` to build the release")
    return sorted(found, key=lambda out: out.path)


def listing_md5(listing: dict[str, str]) -> str:
    """DVC's directory hash (`<md5>.dir`) of a {relative path: md5} listing.

    Computed by dvc-data's own Tree, so it is the hash `dvc.lock` records.
    """
    from dvc_data.hashfile.tree import Tree

    tree = Tree.from_list([{"md5": md5, "relpath": rel} for rel, md5 in listing.items()])
    tree.digest()
    return tree.hash_info.value


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class FileHash:
    md5: str
    sha256: str
    size: int


def hash_chunks(chunks: Iterable[bytes]) -> FileHash:
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    for chunk in chunks:
        md5.update(chunk)
        sha256.update(chunk)
        size += len(chunk)
    return FileHash(md5.hexdigest(), sha256.hexdigest(), size)


@dataclass(frozen=True)
class Mismatch:
    path: str          # relative to the release directory, or "" for the directory itself
    problem: str


def check_release(files: dict[str, FileHash], manifest: Any, outs: list[LockOut]) -> list[Mismatch]:
    """Every way the release files disagree with manifest.json and with dvc.lock.

    `files` are the hashes of the bytes actually there; `manifest` the parsed
    manifest.json (None if it is missing or not JSON); `outs` dvc.lock's
    outputs in the release directory. A directory output is checked file by
    file against its listing (the `.dir` object its hash names) or, when that
    object is not available, by its directory hash.
    """
    problems: list[Mismatch] = []
    if manifest is not None:
        listed = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(listed, dict):
            problems.append(Mismatch(MANIFEST, "has no 'files' mapping"))
        else:
            for rel, info in sorted(listed.items()):
                got = files.get(rel)
                if got is None:
                    problems.append(Mismatch(rel, "missing (listed in manifest.json)"))
                elif got.sha256 != info.get("sha256") or got.size != info.get("bytes"):
                    problems.append(Mismatch(rel, f"sha256 {got.sha256[:12]} ({got.size} bytes) does not match "
                                                  f"manifest.json's {str(info.get('sha256'))[:12]} "
                                                  f"({info.get('bytes')} bytes)"))
            for rel in sorted(set(files) - set(listed) - {MANIFEST}):
                problems.append(Mismatch(rel, "not listed in manifest.json"))
    expected: dict[str, str] = {}
    covered: set[str] = set()
    for out in outs:
        if not out.is_dir:
            expected[out.path] = out.md5
            continue
        prefix = f"{out.path}/" if out.path else ""
        if out.listing is None:
            under = {rel[len(prefix):]: h.md5 for rel, h in files.items() if rel.startswith(prefix)}
            covered.update(prefix + rel for rel in under)
            actual = listing_md5(under)
            if actual != out.md5:
                problems.append(Mismatch(out.path, f"directory hash {actual} does not match dvc.lock's {out.md5} "
                                                   f"(the per-file listing {out.md5} is not in the cache: "
                                                   f"`dvc fetch` names the files)"))
            continue
        actual = listing_md5(out.listing)
        if actual != out.md5:
            problems.append(Mismatch(out.path, f"dvc.lock's listing object {out.md5} is corrupted (its content "
                                               f"hashes to {actual})"))
        expected.update({prefix + rel: md5 for rel, md5 in out.listing.items()})
    for rel, md5 in sorted(expected.items()):
        got = files.get(rel)
        if got is None:
            problems.append(Mismatch(rel, "missing (listed in dvc.lock)"))
        elif got.md5 != md5:
            problems.append(Mismatch(rel, f"md5 {got.md5[:12]} does not match dvc.lock's {md5[:12]}"))
    for rel in sorted(set(files) - set(expected) - covered):
        problems.append(Mismatch(rel, "not in dvc.lock"))
    return problems


def mismatched_files(problems: list[Mismatch]) -> list[str]:
    """The files named by `problems`, once each, in order."""
    return sorted({p.path for p in problems if p.path})


def holds(out: LockOut, path: str) -> bool:
    """Whether dvc.lock's output `out` is, or contains, the release file `path`."""
    return not out.path or path == out.path or path.startswith(f"{out.path}/")


def stages_of(paths: list[str], outs: list[LockOut]) -> list[str]:
    """The stages whose outputs hold `paths` (all of the release's stages when `paths` is empty), sorted."""
    if not paths:
        return sorted({out.stage for out in outs})
    return sorted({out.stage for path in paths for out in outs if holds(out, path)})


def split_stale(outs: list[LockOut], stages: Iterable[str]) -> tuple[list[LockOut], list[LockOut]]:
    """dvc.lock's outputs of stages in dvc.yaml, and those of stages dvc.yaml no longer has.

    DVC keeps a stage's entry in dvc.lock after the stage is gone (a category removed from
    params.yaml by hand leaves `category@<name>` and `publish@<name>` there).
    """
    names = set(stages)
    return [out for out in outs if out.stage in names], [out for out in outs if out.stage not in names]


def removed_categories(stages: Iterable[str]) -> list[str]:
    """The categories of per-category stages (`<stage>@<category>`) among `stages`, sorted."""
    return sorted({stage.split("@", 1)[1] for stage in stages if "@" in stage})


def remedy(paths: list[str], outs: list[LockOut], stale: list[LockOut], restore: str) -> str:
    """What puts the release files `paths` right, as a clause for the person to act on (lower case).

    Outputs of stages in dvc.yaml: `restore` with `{stages}` filled in. Files only a stage gone
    from dvc.yaml wrote: `cqia category remove <name>` (what a category removed from params.yaml
    left). Files no stage wrote: delete them. Never a stage that dvc.yaml does not have.
    """
    live = stages_of(paths, outs)
    unheld = [p for p in paths if not any(holds(out, p) for out in outs)]
    gone = removed_categories(out.stage for p in unheld for out in stale if holds(out, p))
    orphans = [p for p in unheld if not any(holds(out, p) for out in stale)]
    advice = [restore.format(stages=" ".join(live))] if live else []
    advice += [f"run `cqia category remove {name}` (category {name} is gone from params.yaml; "
               f"it deletes what the category left)" for name in gone]
    if orphans:
        advice.append(f"delete {name_some(orphans)} (no stage in dvc.yaml writes "
                      f"{'it' if len(orphans) == 1 else 'them'}), then run `dvc repro`")
    return "; ".join(advice)


def gate_failure(lines: list[str]) -> str:
    """One line saying which stage of `dvc repro` failed and why, from its output."""
    stage = next((m.group(1) for line in reversed(lines)
                  if (m := re.search(r"failed to reproduce '([^']+)'", line))), None)
    reason = None
    for i, line in enumerate(lines):
        if line.startswith("error: "):
            details = []
            for follow in lines[i + 1:]:
                if not follow.startswith("  "):
                    break
                if follow.startswith("  - "):
                    details.append(follow[4:].strip())
            reason = line[len("error: "):].rstrip(":") + (": " + "; ".join(details[:3]) if details else "")
    if reason is None:
        reason = next((line[len("ERROR: "):] for line in reversed(lines) if line.startswith("ERROR: ")),
                      "dvc repro failed")
    return f"stage {stage}: {reason}" if stage and not reason.startswith("failed to reproduce") else reason


def render_problems(problems: list[Mismatch], release_dir: str) -> list[str]:
    """One line per problem, those of one file together (the directory's first)."""
    return [f"{posixpath.join(release_dir, p.path) if p.path else release_dir}: {p.problem}"
            for p in sorted(problems, key=lambda p: p.path)]


# --------------------------------------------------------------------------- the tag message


def tag_message(manifest: dict[str, Any], previous: tuple[str, dict[str, Any]] | None,
                outs: list[LockOut], release_dir: str) -> str:
    """The annotated tag's message: counts per category and the change since the previous release.

    `previous` is (tag, categories of that release) or None for a first release;
    the categories are None when that release's counts could not be read.
    """
    unknown = previous is not None and previous[1] is None
    if unknown:
        prev_tag, previous = previous[0], None
    cats = manifest["categories"]
    total = manifest["released"]
    head = f"{manifest.get('name', 'COIG-CQIA')} {manifest['version']}: {total} records in {len(cats)} categories"
    rows = [["category", "raw", "released", "rejected"]]
    if previous:
        prev_tag, prev = previous
        rows[0].append(f"vs {prev_tag}")
    for name, cat in cats.items():
        row = [name, str(cat["raw"]), str(cat["released"]), str(cat["rejected"])]
        if previous:
            row.append(_delta(cat["released"], prev.get(name, {}).get("released")))
        rows.append(row)
    if previous:
        for name, cat in prev.items():
            if name not in cats:
                rows.append([name, "-", "-", "-", f"removed ({cat['released']})"])
    totals = ["total", str(sum(c["raw"] for c in cats.values())), str(total),
              str(sum(c["rejected"] for c in cats.values()))]
    if previous:
        totals.append(_delta(total, sum(c["released"] for c in prev.values())))
    rows.append(totals)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(row: list[str]) -> str:
        return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip()

    lines = [head, "", fmt(rows[0]), rule] + [fmt(r) for r in rows[1:-1]] + [rule, fmt(rows[-1]), ""]
    if previous:
        changes = _changes(cats, previous[1])
        lines += [f"Changes since {previous[0]}: " + ("; ".join(changes) if changes else "none in the counts") + "."]
    elif unknown:
        lines += [f"Changes since {prev_tag}: unknown (no release metrics committed at {prev_tag})."]
    else:
        lines += ["First release: no earlier release tag."]
    listed = manifest.get("files") or {}
    pinned = next((out for out in outs if out.path == MANIFEST), None)
    pin = f"; manifest.json md5 {pinned.md5} (dvc.lock, stage {pinned.stage})" if pinned else ""
    lines += ["",
              f"{release_dir}: {len(listed) + 1} files, {sum(f.get('bytes', 0) for f in listed.values())} bytes "
              f"besides manifest.json, which holds their sha256{pin}",
              f"Check it with `cqia verify --rev {manifest['version']}`; fetch it with "
              f"`dvc get <repo> {release_dir} --rev {manifest['version']}`."]
    return "\n".join(lines) + "\n"


def categories_of(release_metrics: bytes | None) -> dict[str, Any] | None:
    """The per-category counts in a release's metrics file, or None if they cannot be read."""
    import orjson

    try:
        cats = orjson.loads(release_metrics)["categories"] if release_metrics else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    ok = isinstance(cats, dict) and all(isinstance(c, dict) and {"raw", "released"} <= set(c) for c in cats.values())
    return cats if ok else None


def _delta(now: int, before: int | None) -> str:
    if before is None:
        return "new"
    return f"{now - before:+d}"


def _changes(cats: dict[str, Any], prev: dict[str, Any]) -> list[str]:
    out = []
    for name, cat in cats.items():
        old = prev.get(name)
        if old is None:
            out.append(f"{name} added ({cat['released']} released)")
        elif old["released"] != cat["released"] or old["raw"] != cat["raw"]:
            out.append(f"{name} released {old['released']} -> {cat['released']} (raw {old['raw']} -> {cat['raw']})")
    for name, old in prev.items():
        if name not in cats:
            out.append(f"{name} removed (had {old['released']} released)")
    return out


# --------------------------------------------------------------------------- git and DVC


UNAWAITED_WARNING = "ignore:coroutine:RuntimeWarning"  # a -W filter: the message starts with "coroutine"


def tool_env() -> dict[str, str]:
    """The environment for `git` and `dvc`: this Python's bin directory first on PATH,
    so `dvc` and the stages' `python` are the ones installed with cqia."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # `dvc push` to S3 can end with "RuntimeWarning: coroutine 'S3FileSystem._exists' was never
    # awaited" (s3fs's pending calls when one fails): noise after the real error, for nobody to act on.
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), UNAWAITED_WARNING]))
    return env


def dvc_bin() -> str:
    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.exists() else "dvc"


def run(cmd: list[str], cwd: Path, *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=tool_env(), input=input)
    except FileNotFoundError:
        raise CqiaError(f"`{cmd[0]}` is not installed or not on PATH", fix="Install it and try again") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise CqiaError(f"`{' '.join(cmd)}` failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc


def current_branch(root: Path) -> str | None:
    """The branch HEAD is on, or None when HEAD is detached."""
    proc = run(["git", "symbolic-ref", "-q", "--short", "HEAD"], root, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def lock_stages(root: Path) -> set[str]:
    """The names of the stages dvc.lock has entries for (none when there is no dvc.lock)."""
    from ruamel.yaml import YAML

    path = root / LOCK_FILE
    if not path.is_file():
        return set()
    lock = _load_yaml(path.read_text(encoding="utf-8"), LOCK_FILE, YAML(typ="safe", pure=True))
    stages = lock.get("stages") if isinstance(lock, dict) else None
    return set(stages) if isinstance(stages, dict) else set()


def require_remote(urls: dict[str, str], name: str, where: str) -> None:
    """Refuse, in one line, a DVC remote name that is not configured."""
    if name not in urls:
        known = ", ".join(sorted(urls)) or "none"
        raise CqiaError(f"DVC remote '{name}' is not configured", where=where,
                        fix=f"Available remotes: {known} (`dvc remote list`)")


REMOTE_TIMEOUT = 15.0   # seconds the remote check may take in all (S3: 5 s per connection or read)


def check_remote(repo, name: str, where: str, timeout: float = REMOTE_TIMEOUT) -> None:
    """Refuse, in one line, a DVC remote that `dvc push` could not write to.

    A directory remote: the directory, or the nearest parent that exists, must be a writable
    directory. Any other remote: one cheap call through DVC's own filesystem for it (does the
    remote's path exist; on S3, when it does not yet, does its bucket), within `timeout`, so
    that missing credentials, an unreachable endpoint or a missing bucket are found before
    anything is built rather than after.
    """
    import warnings

    from dvc.fs import get_cloud_fs

    cls, config, path = get_cloud_fs(repo.config, name=name)
    label = f"DVC remote '{name}' ({repo.config['remote'][name].get('url', path)})"
    other = "or choose another remote with --remote NAME (`dvc remote list`)"
    if cls.protocol == "local":
        _check_directory(Path(path), label, where, other)
        return
    if cls.protocol == "s3":
        config = {**config, "connect_timeout": timeout / 3, "read_timeout": timeout / 3}  # the remote's own are longer
    # s3fs can leave coroutines un-awaited when a call fails; their warning would follow our error
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    try:
        fs = cls(**config)
        if cls.protocol == "s3":  # botocore retries a refused connection 4 times with backoff (12 s); once is enough
            fs.fs_args.setdefault("config_kwargs", {}).setdefault("retries", {"max_attempts": 2})
        found = _within(timeout, lambda: fs.exists(path))
        bucket = path.split("/")[0]
        if not found and cls.protocol == "s3" and not _within(timeout, lambda: fs.exists(bucket)):
            raise CqiaError(f"{label}: bucket '{bucket}' does not exist, or these credentials cannot see it",
                            where=where, fix=f"Create it, or set the remote's url (`dvc remote modify {name} url "
                                             f"s3://BUCKET/PATH`), {other}")
    except CqiaError:
        raise
    except TimeoutError:
        raise CqiaError(f"{label} did not answer within {timeout:g} s", where=where,
                        fix=f"Check its endpoint and the network, {other}") from None
    except Exception as exc:  # each filesystem has its own errors; the class names the kind
        kinds = {c.__name__ for c in type(exc).__mro__}
        reason = str(exc).strip() or type(exc).__name__
        if "NoCredentialsError" in kinds:
            raise CqiaError(f"{label} has no credentials ({reason})", where=where,
                            fix=f"Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `dvc remote modify --local "
                                f"{name} access_key_id ...` and `... secret_access_key ...`, {other}") from None
        raise CqiaError(f"{label} cannot be reached ({reason})", where=where,
                        fix=f"Check its endpoint, credentials and the network, {other}") from None


def _check_directory(path: Path, label: str, where: str, other: str) -> None:
    existing = next(p for p in [path, *path.parents] if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise CqiaError(f"{label} cannot be created: {existing} is not a directory", where=where,
                        fix=f"Move that file away, {other}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CqiaError(f"{label} cannot be written: you may not write in {existing}", where=where,
                        fix=f"Fix its permissions, {other}")


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """call(), or TimeoutError when it has not returned after `seconds` (it is left to finish on its own)."""
    import threading

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def tag_commit(root: Path, tag: str) -> str | None:
    """The commit a tag points at, or None when there is no such tag."""
    proc = run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}"], root, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def commit_subject(root: Path, commit: str) -> str:
    return run(["git", "log", "-1", "--format=%s", commit], root).stdout.strip()


def git_tags(root: Path) -> list[str]:
    return run(["git", "tag", "--list"], root).stdout.split()


def changed_paths(root: Path) -> list[str]:
    return porcelain_paths(run(["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"], root).stdout)


def git_show(root: Path, rev: str, path: str) -> bytes | None:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, env=tool_env())
    return proc.stdout if proc.returncode == 0 else None


def stream(cmd: list[str], cwd: Path, echo: Callable[[str], None],
           stall_after: float | None = None) -> tuple[int, list[str]]:
    """Run a command, passing each output line to `echo` as it comes; (exit code, lines).

    With `stall_after`, a watchdog (cqia/registry/stall.py) stops the command once nothing it does has
    moved for that many seconds, and `Stalled` is raised."""
    from cqia.registry.stall import Stalled, Watchdog

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, env=tool_env())
    watchdog = Watchdog(proc.pid, stall_after) if stall_after else None
    if watchdog:
        watchdog.start()
    lines = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            echo(line)
        code = proc.wait()
    finally:
        if watchdog:
            watchdog.stop()
    if watchdog and watchdog.fired:
        raise Stalled(watchdog.seconds)
    return code, lines


def open_dvc(root: Path):
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except DvcException as exc:
        raise CqiaError(f"not a DVC repository ({exc})", where=str(root), fix="Run `dvc init`") from None


def pipeline(repo) -> list:
    """The stages of dvc.yaml (foreach stages one per item: `publish@zhihu`)."""
    from dvc.exceptions import DvcException

    try:
        return list(repo.index.stages)
    except DvcException as exc:
        raise CqiaError(f"DVC cannot read the pipeline ({exc})", where="dvc.yaml",
                        fix="Fix it (`dvc status` shows the same error)") from None


def stage_names(repo) -> set[str]:
    """The names of dvc.yaml's stages; a `.dvc` file (`dvc add`, `dvc import`) is a stage with no name."""
    return {name for stage in pipeline(repo) if (name := getattr(stage, "name", None))}


def dvc_outs(repo) -> list[tuple[str, bool]]:
    """(path relative to the root, cached?) of every stage output."""
    return [(Path(out.fs_path).relative_to(repo.root_dir).as_posix(), bool(out.use_cache))
            for stage in pipeline(repo) for out in stage.outs]


def remotes(repo) -> tuple[dict[str, str], str | None]:
    """{name: url} of the DVC remotes, and the default remote's name."""
    conf = repo.config
    return ({name: str(entry.get("url", "")) for name, entry in conf["remote"].items()},
            conf["core"].get("remote"))


GITIGNORE = ".gitignore"  # DVC writes one in each directory holding outputs; git's, not the release's


def hash_tree(root: Path) -> dict[str, FileHash]:
    """Hashes of every file under `root`, keyed by POSIX path relative to it."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != GITIGNORE):
        with open(path, "rb") as handle:
            out[path.relative_to(root).as_posix()] = hash_chunks(iter(lambda: handle.read(1 << 20), b""))
    return out


def read_listing(repo, lock_md5: str) -> dict[str, str] | None:
    """dvc.lock's per-file md5s: the `.dir` object in the local cache, or None if it is not there."""
    import orjson

    path = Path(repo.cache.local.oid_to_path(lock_md5))
    try:
        return {e["relpath"]: e["md5"] for e in orjson.loads(path.read_bytes())}
    except FileNotFoundError:
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return {}  # its hash is not the lock's: reported as a corrupted listing


@dataclass
class ReleaseState:
    """What verify compares: the release's bytes, its manifest and dvc.lock's view of it."""

    label: str                      # "data/release" or "data/release at v0.1"
    version: str | None
    files: dict[str, FileHash]
    manifest: Any
    outs: list[LockOut]             # dvc.lock's outputs in the release directory, with listings where known
    notes: list[Mismatch]
    stale: list[LockOut] = field(default_factory=list)  # dvc.lock's outputs of stages dvc.yaml no longer has


def parse_manifest(raw: bytes | None) -> tuple[Any, list[Mismatch]]:
    import orjson

    if raw is None:
        return None, [Mismatch(MANIFEST, "missing")]
    try:
        return orjson.loads(raw), []
    except orjson.JSONDecodeError as exc:
        return None, [Mismatch(MANIFEST, f"is not valid JSON ({exc})")]


def workspace_state(root: Path, release_dir: str) -> ReleaseState:
    from ruamel.yaml import YAML

    lock_path = root / LOCK_FILE
    if not lock_path.is_file():
        raise CqiaError("file not found", where=LOCK_FILE, fix="Run `dvc repro` to build the release")
    outs = lock_outs(_load_yaml(lock_path.read_text(encoding="utf-8"), LOCK_FILE, YAML(typ="safe", pure=True)),
                     release_dir)
    directory = root / release_dir
    if not directory.is_dir():
        raise CqiaError("the release is not in the workspace", where=release_dir,
                        fix="Run `dvc pull` (or `dvc repro`) first")
    files = hash_tree(directory)
    manifest_path = directory / MANIFEST
    manifest, notes = parse_manifest(manifest_path.read_bytes() if manifest_path.is_file() else None)
    with open_dvc(root) as repo:
        outs, stale = split_stale(outs, stage_names(repo))
        outs = [replace(out, listing=read_listing(repo, out.md5)) if out.is_dir else out for out in outs]
    version = manifest.get("version") if isinstance(manifest, dict) else None
    return ReleaseState(release_dir, version, files, manifest, outs, notes, stale)


def revision_state(root: Path, release_dir: str, rev: str, remote: str | None = None) -> ReleaseState:
    """The release as committed at `rev`, read through DVC without a checkout.

    Files come from the local cache, or are streamed from `remote` (default:
    the default remote) when they are not cached.
    """
    from dvc.api import DVCFileSystem
    from dvc.scm import RevError
    from ruamel.yaml import YAML

    try:
        fs = DVCFileSystem(str(root), rev=rev, remote=remote)
        lock_text = fs.read_text(LOCK_FILE, encoding="utf-8")
    except RevError:
        raise CqiaError(f"unknown revision {rev!r}", where="--rev",
                        fix="Name a tag, branch or commit (`git tag`)") from None
    except FileNotFoundError:
        raise CqiaError(f"no {LOCK_FILE} at {rev}", where="--rev", fix="Name a revision that has a release") from None
    outs = lock_outs(_load_yaml(lock_text, f"{LOCK_FILE} at {rev}", YAML(typ="safe", pure=True)), release_dir,
                     where=f"{LOCK_FILE} at {rev}")
    label = f"{release_dir} at {rev}"
    try:
        entries = {path: info for path, info in fs.find(release_dir, detail=True).items()
                   if posixpath.basename(path) != GITIGNORE}
        listing = {posixpath.relpath(path, release_dir): info["md5"] for path, info in entries.items()}
        files = {}
        for path in sorted(entries):
            with fs.open(path, "rb") as handle:
                files[posixpath.relpath(path, release_dir)] = hash_chunks(iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError as exc:
        raise CqiaError(f"data is neither in the cache nor on the remote ({exc})", where=label,
                        fix="Check the remote (`dvc remote list`) and its credentials") from None
    except Exception as exc:  # DVC's remote errors have many types; all mean "could not read it"
        raise CqiaError(f"could not read the release ({type(exc).__name__}: {exc})", where=label,
                        fix="Check the remote (`dvc remote list`) and its credentials") from None
    manifest, notes = parse_manifest(fs.read_bytes(posixpath.join(release_dir, MANIFEST))
                                     if MANIFEST in files else None)
    version = manifest.get("version") if isinstance(manifest, dict) else None
    outs = [replace(out, listing={rel[len(out.path) + 1:]: md5 for rel, md5 in listing.items()
                                  if rel.startswith(out.path + "/")}) if out.is_dir else out for out in outs]
    return ReleaseState(label, version, files, manifest, outs, notes)


def verify_report(state: ReleaseState, problems: list[Mismatch], release_dir: str, rev: str | None) -> dict:
    """`cqia verify --json`: what was checked and every mismatch, one entry per problem."""
    return {
        "release_dir": release_dir,
        "rev": rev,
        "version": state.version,
        "ok": not problems,
        "files": len(state.files),
        "dvc_lock": {posixpath.join(release_dir, out.path) if out.path else release_dir: out.md5 for out in state.outs},
        "mismatched_files": [posixpath.join(release_dir, p) for p in mismatched_files(problems)],
        "problems": [{"path": posixpath.join(release_dir, p.path) if p.path else release_dir, "problem": p.problem}
                     for p in sorted(problems, key=lambda p: p.path)],
    }


def verify_state(state: ReleaseState) -> list[Mismatch]:
    return state.notes + check_release(state.files, state.manifest, state.outs)
