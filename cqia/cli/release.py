"""`cqia release` and `cqia verify`: cut a release as a git tag; check a release's bytes.

A thin click layer over cqia/registry/releases.py.
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from cqia.common.errors import CqiaError
from cqia.common.layout import registry_root
from cqia.common.text import counted


def register(cli: click.Group) -> None:
    cli.add_command(release)
    cli.add_command(verify)


def _paths() -> tuple[str, str]:
    from cqia.cli import RELEASE_DIR, RELEASE_METRICS  # imported late: cqia.cli imports this module

    return RELEASE_DIR.as_posix(), RELEASE_METRICS.as_posix()


def _progress(line: str) -> None:
    click.echo(line, err=True)


@click.command()
@click.argument("version")
@click.option("--remote", "remote_name", metavar="NAME",
              help="DVC remote to push the data to. Default: the repository's default remote.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON: version, commit, tag message, counts, remote and what to push.")
def release(version: str, remote_name: str | None, as_json: bool) -> None:
    """Build, push, commit and tag release VERSION.

    Sets `release.version` in params.yaml, runs `dvc repro` (every gate),
    checks the release against its manifest and dvc.lock and its DVC cache
    objects against their names (`dvc push` would send a damaged one), runs `dvc push`,
    commits dvc.lock, params.yaml and the metrics, and creates an annotated
    tag whose message counts the records per category and what changed since
    the previous release. It prints the tag message and what to push (with
    --json, all of it as one JSON object; the build's progress goes to stderr).

    Refuses with a one-line reason, before building anything, when VERSION is
    not v<major>.<minor>[.<patch>], when a tag already names it, when HEAD is
    not on a branch, when the working tree has uncommitted changes, when
    dvc.lock still has the stages of a category removed from params.yaml, or
    when the remote is unknown, unreachable, without credentials or not
    writable. When a gate or the push fails it commits and tags nothing; the
    build stays in the workspace. A push that moves nothing for 120 s (a stall
    in the middle of an upload; CQIA_PUSH_STALL_SECONDS) is stopped and fails.
    A run that failed or was stopped at any step is finished by running the
    same command again: the tag is made only after
    the data is on the remote, and on a commit tagged VERSION already the
    command pushes the data again and prints the summary.

    \b
    Example:
        cqia release v0.2
        cqia release v0.3 --remote s3
    """
    from cqia.registry import releases as rel
    from cqia.registry.stall import stall_seconds

    release_dir, metrics_path = _paths()
    where = f"release {version}"
    rel.parse_version(version, where)
    root = registry_root()
    branch = rel.current_branch(root)
    if branch is None:
        head = rel.run(["git", "rev-parse", "--short", "HEAD"], root).stdout.strip()
        raise CqiaError(f"HEAD is detached at {head}, so the release commit and its tag would be on no branch",
                        where=where, fix="Switch to the branch to release from (`git switch <branch>`), "
                                         "or make one at this commit (`git switch -c <branch>`)")

    tags = rel.git_tags(root)
    taken = rel.conflicting_tag(tags, version)
    head = rel.run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    tagged_here = taken == version and rel.tag_commit(root, version) == head
    if taken and not tagged_here:
        same = "" if taken == version else f" and names the same version as {version}"
        raise CqiaError(f"tag {taken} already exists{same}", where=where,
                        fix="Choose a new version (`git tag --list 'v*'` lists the releases)")

    stall_after = stall_seconds()      # a bad CQIA_PUSH_STALL_SECONDS refuses before anything is built
    with rel.open_dvc(root) as repo:
        build = rel.build_files(rel.dvc_outs(repo))
        urls, default = rel.remotes(repo)
        stages = rel.stage_names(repo)
        name = _preflight(rel, repo, root, where, version, build, urls, remote_name or default, stages)

    params_path = root / rel.PARAMS_FILE
    old_params = params_path.read_text(encoding="utf-8")
    new_params = rel.set_version_text(old_params, version)
    if new_params != old_params:
        params_path.write_text(new_params, encoding="utf-8")
    # The order keeps a tag off data the remote lacks: build, push, commit, tag. A run stopped
    # anywhere is resumed by the same command: what is done already is found done (`dvc repro`
    # and `dvc push` skip it, a release commit has nothing left to commit, a tag on HEAD is kept).
    state = _build_and_push(rel, root, version, where, build, release_dir, name, tagged_here, stall_after)

    to_commit = sorted({p for p in rel.changed_paths(root) if p in build or p == rel.PARAMS_FILE})
    if to_commit:
        rel.run(["git", "add", "--", *to_commit], root)
        _git_step(rel, root, ["git", "commit", "-q", "-m", f"Release {version}"], where,
                  f"Nothing was committed or tagged; the data is on DVC remote '{name}'. Fix that and run "
                  f"`{_again(version, remote_name)}` again")
    commit = rel.run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    resumed = not to_commit and rel.commit_subject(root, commit) == f"Release {version}"

    previous = None
    prev_tag = rel.previous_release(tags, version)
    if prev_tag:
        previous = (prev_tag, rel.categories_of(rel.git_show(root, prev_tag, metrics_path)))
    message = rel.tag_message(state.manifest, previous, state.outs, release_dir)
    if tagged_here:
        message = rel.run(["git", "tag", "--list", "--format=%(contents)", version], root).stdout.removesuffix("\n")
    else:
        _progress(f"release {version}: committed {commit[:7]}; tagging")
        _git_step(rel, root, ["git", "tag", "-a", "--cleanup=verbatim", "-F", "-", version], where,
                  f"The release commit {commit[:7]} and its data on DVC remote '{name}' are in place, not the "
                  f"tag. Fix that and run `{_again(version, remote_name)}` again", input=message)

    shared = sorted(n for n, url in urls.items() if "://" in url)
    local = "://" not in urls[name]
    if as_json:
        cats = state.manifest["categories"]
        click.echo(orjson.dumps({
            "version": version, "tag": version, "commit": commit, "branch": branch, "previous": prev_tag,
            "tag_message": message, "resumed": tagged_here or resumed, "released": state.manifest["released"],
            "raw": sum(c["raw"] for c in cats.values()), "rejected": sum(c["rejected"] for c in cats.values()),
            "categories": cats, "committed_files": to_commit, "remote": {"name": name, "url": urls[name]},
            "push": ["git push --follow-tags"] + ([f"dvc push -r {shared[0]}"] if local and shared else []),
        }, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(message)
    short = rel.run(["git", "rev-parse", "--short", commit], root).stdout.strip()
    if tagged_here:
        done = f"{version} was tagged on commit {short} already"
    elif resumed:
        done = f"Tagged {version} on commit {short} (the release commit of an earlier run)"
    else:
        done = f"Tagged {version} on commit {short} ({counted(len(to_commit), 'file')} committed)"
    click.echo(f"{done}; data pushed to DVC remote '{name}' ({urls[name]}).")
    click.echo("Publish the commit and the tag:")
    click.echo("    git push --follow-tags")
    if local:
        click.echo(f"Remote '{name}' is a directory on this machine; to share the data beyond it, also "
                   + (f"`dvc push -r {shared[0]}`" if shared else "push to a remote others can reach")
                   + " (docs/releases.md: Cutting a release).")


def _preflight(rel, repo, root: Path, where: str, version: str, build, urls: dict[str, str], name: str | None,
               stages: set[str]) -> str:
    """Every refusal that needs no build, in one line each; the remote to push to."""
    params_text = (root / rel.PARAMS_FILE).read_text(encoding="utf-8")
    head_params = rel.git_show(root, "HEAD", rel.PARAMS_FILE)
    version_only = head_params is not None and rel.params_differ_only_in_version(
        head_params.decode("utf-8"), params_text)
    dirty = rel.uncommitted_changes(rel.changed_paths(root), build, version_only)
    if dirty:
        raise CqiaError(f"the working tree has uncommitted changes: {rel.name_some(dirty)}", where=where,
                        fix="Commit or discard them; a release is built from committed files only")
    if not name:
        raise CqiaError("no DVC remote to push to", where=where,
                        fix="Pass --remote NAME or set a default (`dvc remote default NAME`)")
    rel.require_remote(urls, name, where)
    stale = sorted(rel.lock_stages(root) - stages)
    gone = rel.removed_categories(stale)
    if gone:
        runs = " and ".join(f"`cqia category remove {category}`" for category in gone)
        raise CqiaError(f"dvc.lock still has stages of {'categories' if len(gone) > 1 else 'category'} "
                        f"{', '.join(gone)}, no longer in params.yaml ({rel.name_some(stale)})", where=where,
                        fix=f"Run {runs}, commit, and run `cqia release {version}` again")
    rel.check_remote(repo, name, where)
    return name


def _again(version: str, remote: str | None) -> str:
    return f"cqia release {version}" + (f" --remote {remote}" if remote else "")


def _git_step(rel, root: Path, cmd: list[str], where: str, fix: str, input: str | None = None) -> None:
    """Run a git command of the release; its failure is one line that says what is in place and what to do."""
    proc = rel.run(cmd, root, check=False, input=input)
    if proc.returncode:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = next((line for line in lines if line.startswith(("fatal: ", "error: "))), lines[-1] if lines else "")
        raise CqiaError(f"`{' '.join(cmd[:2])}` failed: {detail.rstrip('.') or f'exit {proc.returncode}'}",
                        where=where, fix=fix)


def _build_and_push(rel, root: Path, version: str, where: str, build, release_dir: str, remote: str,
                    tagged: bool, stall_after: float | None):
    """dvc repro, the release gates, dvc push. Returns the verified release state.

    On a commit tagged `version` already (a rerun after the tag), the tagged release is checked
    and pushed again, so its data is on the remote, and nothing else changes. A push that stands
    still for `stall_after` seconds is stopped (cqia/registry/stall.py).
    """
    from cqia.registry.stall import STALL_ENV, Stalled

    again = f"run `cqia release {version}` again"
    code, lines = rel.stream([rel.dvc_bin(), "repro"], root, _progress)
    if code:
        raise CqiaError(f"`dvc repro` failed: {rel.gate_failure(lines)}", where=where,
                        fix=f"Nothing was pushed, committed or tagged; fix what it says (and commit any change to "
                            f"code, params or data), then {again}")
    state = rel.workspace_state(root, release_dir)
    problems = rel.verify_state(state)
    if problems:
        for line in rel.render_problems(problems, release_dir):
            _progress(line)
        raise CqiaError(f"the built release does not match its manifest or dvc.lock "
                        f"({rel.name_some(rel.mismatched_files(problems)) or release_dir})", where=where,
                        fix="Nothing was pushed, committed or tagged; " + rel.remedy(
                            rel.mismatched_files(problems), state.outs, state.stale,
                            "run `dvc repro --force {stages}`") + f", then {again}")
    if state.version != version:
        raise CqiaError(f"{release_dir}/{rel.MANIFEST} says version {state.version!r}, not {version!r}",
                        where=where, fix="Check that the merge stage reads `release.version` from params.yaml")
    stray = [p for p in rel.changed_paths(root) if p not in build and p != rel.PARAMS_FILE]
    if stray:
        raise CqiaError(f"`dvc repro` changed files that are not outputs of a stage: {rel.name_some(stray)}",
                        where=where, fix=f"Nothing was pushed, committed or tagged; find what wrote them, then {again}")
    _check_objects(rel, root, release_dir, state, version, again)
    _progress(f"release {version}: built and verified; pushing the data to DVC remote '{remote}'")
    done = (f"Tag {version} is on this commit but its data may not all be on the remote" if tagged
            else "Nothing was committed or tagged")
    retry = f"run `cqia release {version} --remote {remote}` again"
    try:
        code, lines = rel.stream([rel.dvc_bin(), "push", "-r", remote], root, _progress, stall_after)
    except Stalled as stalled:
        raise CqiaError(f"`dvc push -r {remote}` made no progress for {stalled.seconds:g} s (nothing read, written "
                        f"or sent), so it was stopped", where=where,
                        fix=f"{done}; when the remote is reachable, {retry} ({STALL_ENV} sets how long a push may "
                            "stand still)") from None
    if code:
        reason = next((line.removeprefix("ERROR: ") for line in reversed(lines) if line.startswith("ERROR: ")),
                      f"exit {code}")
        raise CqiaError(f"`dvc push -r {remote}` failed: {reason}", where=where,
                        fix=f"{done}; when the remote is reachable, {retry}")
    return state


def _check_objects(rel, root: Path, release_dir: str, state, version: str, again: str) -> None:
    """Refuse to push a release whose DVC cache objects are damaged (`dvc push` sends them as they are).

    DVC trusts its cache: an object whose bytes changed under the same size and mtime passes `dvc
    repro` and is pushed, so the remote would hold bytes that do not match the tag. Every release
    file's object is hashed again (24 s for the 5.6 GB of a 1M-record release here); the first
    damaged one is named with its repair.
    """
    from cqia.registry.cache_objects import damage_error, inspect_objects

    _progress(f"release {version}: checking the DVC cache objects of {release_dir}")
    objects = inspect_objects(root, release_dir, state.outs, sorted(state.files))
    if objects.damaged:
        raise damage_error(objects.damaged, before="Nothing was pushed, committed or tagged; ", after=again)


@click.command()
@click.option("--rev", metavar="REV",
              help="Verify the release committed at REV (tag, branch or commit) without checking it out.")
@click.option("--remote", "remote_name", metavar="NAME",
              help="The DVC remote whose copy of a file that does not match is checked (and, with --rev, read). "
                   "Default: the default remote.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (the exit code is the same: 1 if a file does not match).")
def verify(rev: str | None, remote_name: str | None, as_json: bool) -> None:
    """Re-hash the release files against manifest.json and dvc.lock.

    Names every file whose bytes differ from its sha256 in manifest.json or
    its md5 in dvc.lock's listing of the release directory, that is missing,
    or that is not listed, and then exits 1. For such a file it hashes the
    object dvc.lock names, in the DVC cache and on the remote, and names a
    damaged one and the repair: after `dvc pull -r NAME` failed with
    `Checkout failed`, `cqia verify --remote NAME` names the object on NAME.
    With --rev, reads the release as committed at REV from the DVC cache (or
    the remote) instead of the workspace.

    \b
    Example:
        cqia verify
        cqia verify --remote s3
        cqia verify --rev v0.1 --json
    """
    from cqia.registry import releases as rel

    release_dir, _ = _paths()
    root = registry_root()
    if remote_name:
        with rel.open_dvc(root) as repo:
            rel.require_remote(rel.remotes(repo)[0], remote_name, "--remote")
    state = (rel.revision_state(root, release_dir, rev, remote_name) if rev
             else rel.workspace_state(root, release_dir))
    problems = rel.verify_state(state)
    if as_json:
        click.echo(orjson.dumps(rel.verify_report(state, problems, release_dir, rev),
                                option=orjson.OPT_INDENT_2).decode())
    else:
        for line in rel.render_problems(problems, release_dir):
            click.echo(line)
    if problems:
        files = rel.mismatched_files(problems)
        from cqia.registry.cache_objects import damage_error, inspect_objects, uncached_fix  # name the object
        objects = inspect_objects(root, release_dir, state.outs, files, remote_name)
        if objects.damaged:
            raise damage_error(objects.damaged)
        count = counted(len(files), "file") if files else "the directory"
        if rev:
            fix = ("the copy in the DVC cache or on the remote is damaged; rebuild it with `dvc repro` at that "
                   "revision and push it again")
        elif objects.uncached:    # never pulled, or dropped by a `dvc pull` that found the remote's copy damaged
            fix = uncached_fix(objects, " ".join(rel.stages_of(files, state.outs)))
        else:
            fix = rel.remedy(files, state.outs, state.stale, "restore the release with `dvc checkout --force {stages}`")
        fix = fix[:1].upper() + fix[1:]
        raise CqiaError(f"{count} do{'es' if len(files) == 1 else ''} not match release {state.version}"
                        + (f" ({rel.name_some(files)})" if files else ""), where=state.label, fix=fix)
    if not as_json:
        matches = "matches" if len(state.files) == 1 else "match"
        click.echo(f"{state.label}: release {state.version}, {counted(len(state.files), 'file')} {matches} manifest.json "
                   f"(sha256) and dvc.lock (md5 of {counted(len(state.outs), 'output')})")
