"""Record-level audit of releases: lineage, history and diff.

Reads a release's per-category lineage (`lineage/<category>/index.parquet`
and `lineage.jsonl`) and records (`<category>/train.jsonl`) either from the
workspace (`data/release/`) or at a git revision through DVC's file system
(no checkout; the bytes come from the DVC cache or the remote).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import orjson

from cqia.common.errors import CqiaError, ReleaseUnavailable, did_you_mean
from cqia.common.lineage import INDEX_FILE, category_of, lineage_path, records_path
from cqia.registry import api

RELEASE_DIR = api.RELEASE_PATH
WORKSPACE = "workspace"
ID_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}-[0-9a-f]{16}")  # make_id: category (params.NAME_RE), 16 hex
INDEX_COLUMNS = ["id", "category", "status", "reason", "lineage_offset", "lineage_length",
                 "record_offset", "record_length", "record_hash"]


class Release(api.Release):
    """One release's files, from the workspace (`workspace` or None) or at a git revision,
    with the index lookups the audit commands need."""

    def __init__(self, repo: str | Path = ".", rev: str | None = None):
        rev = None if rev in (None, WORKSPACE) else rev
        super().__init__(rev=rev, repo=None if str(repo) == "." else str(repo))
        self.label = rev or WORKSPACE

    def open(self, name: str) -> BinaryIO:  # type: ignore[override]
        return super().open(f"{RELEASE_DIR}/{name}")

    def arrow_file(self, name: str):
        """The file for pyarrow, never a Python file object: a local path, or the bytes read through DVC.

        pyarrow given a Python file object may still be closing it on one of its threads when the
        interpreter exits, which aborts the process ("terminate called without an active
        exception", apache/arrow#33975); a path or an Arrow buffer involves no Python at all.
        """
        import pyarrow as pa

        if isinstance(self._fs, api._Local):
            return str(self._fs.root / RELEASE_DIR / name)
        with self.open(name) as handle:
            return pa.BufferReader(handle.read())

    def index(self, columns: list[str] | None = None, filters=None, category: str | None = None):
        """The lineage index of one category, or of every category in release order (one table)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for name in [category] if category else list(self.categories):
            tables.append(pq.read_table(self.arrow_file(lineage_path(name, INDEX_FILE)), columns=columns,
                                        filters=filters))
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) != 1 else tables[0]

    def entry(self, record_id: str) -> dict[str, Any] | None:
        """The index row of one id, reading only the row group that can hold it.

        The index is sorted by id and written with statistics, so the row
        group is found from the footer's min/max (no pyarrow.dataset import,
        which alone costs a quarter of a second).
        """
        import pyarrow.parquet as pq

        category = category_of(record_id)
        if category not in self.categories:
            return None
        with pq.ParquetFile(self.arrow_file(lineage_path(category, INDEX_FILE))) as pf:
            meta = pf.metadata
            column = meta.schema.names.index("id")
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(column).statistics
                if stats is not None and stats.has_min_max and not (stats.min <= record_id <= stats.max):
                    continue
                table = pf.read_row_group(group, columns=INDEX_COLUMNS)
                ids = table.column("id").to_pylist()
                from bisect import bisect_left

                at = bisect_left(ids, record_id)
                if at < len(ids) and ids[at] == record_id:
                    return table.slice(at, 1).to_pylist()[0]
        return None

    def close_ids(self, record_id: str) -> list[str]:
        """Ids of the release one or two characters away from `record_id`, closest first ("did you mean").

        A typo leaves one half of the 16 hex digits intact, so the candidates are the ids that
        share the first or the last half (a vectorised filter); difflib ranks only those.
        """
        import difflib

        import pyarrow.compute as pc

        category = category_of(record_id)
        if category not in self.categories:
            return []
        ids = self.index(["id"], category=category).column("id")
        digits = record_id[len(category) + 1:]
        half = len(digits) // 2
        near = ids.filter(pc.or_(pc.starts_with(ids, f"{category}-{digits[:half]}"), pc.ends_with(ids, digits[half:])))
        return difflib.get_close_matches(record_id, near.to_pylist(), n=3, cutoff=0.85)

    def read_span(self, name: str, offset: int, length: int) -> bytes:
        with self.open(name) as handle:
            handle.seek(offset)
            return handle.read(length)

    def lineage(self, record_id: str) -> dict[str, Any] | None:
        row = self.entry(record_id)
        if row is None:
            return None
        return orjson.loads(self.read_span(lineage_path(row["category"]), row["lineage_offset"], row["lineage_length"]))

    def records_at(self, category: str, spans: list[tuple[int, int]]) -> Iterator[dict[str, Any]]:
        """Released records of `category` at the given (offset, length) spans of its train.jsonl, in that order."""
        with self.open(records_path(category)) as handle:
            for offset, length in spans:
                handle.seek(offset)
                yield orjson.loads(handle.read(length))


# --- lineage ------------------------------------------------------------------


def lineage(record_id: str, repo: str | Path = ".", rev: str | None = None, with_releases: bool = True) -> dict[str, Any]:
    check_id(record_id)
    release = Release(repo, rev)
    found = release.lineage(record_id)
    if found is None or with_releases:
        past, readable = _history(record_id, repo)
        rows = past["releases"]
    if found is None:
        readable[WORKSPACE] = release if release.label == WORKSPACE else _workspace(repo)
        raise _not_held(record_id, release.label, rows, readable)
    result = lineage_result(found, release.version)
    if with_releases:
        result["releases"] = [h["rev"] for h in rows if h["state"] != "absent" and h["status"] == "released"]
        unreadable = [h["rev"] for h in rows if h["state"] == "unreadable"]
        if unreadable:
            result["unreadable_releases"] = unreadable
    return result


def check_id(record_id: str) -> None:
    if not ID_RE.fullmatch(record_id):
        raise CqiaError(f"{record_id!r} is not a record id",
                        fix="An id is its source category, '-' and 16 hex digits, e.g. 'zhihu-3c6e79232441e093' "
                            "(`cqia summary` lists the categories)")


def _workspace(repo: str | Path) -> Release | None:
    try:
        return Release(repo, None)
    except CqiaError:  # no release built in the working tree
        return None


def _not_held(record_id: str, label: str, rows: list[dict[str, Any]],
              readable: dict[str, Release | None]) -> CqiaError:
    """The error for an id the release at `label` does not hold: the releases that do hold it, or, when
    none does, what exists (the categories, ids one or two characters away)."""
    released = [row["rev"] for row in rows if row["status"] == "released"]
    rejected = [row["rev"] for row in rows if row["status"] == "rejected"]
    workspace = readable.get(WORKSPACE)
    in_workspace = label != WORKSPACE and workspace is not None and workspace.entry(record_id) is not None
    held = [f"released in tags {', '.join(released)}"] if released else []
    held += [f"rejected in tags {', '.join(rejected)}"] if rejected else []
    held += ["in the workspace release"] if in_workspace else []
    here = "the workspace release" if label == WORKSPACE else f"the release at {label}"
    if held:
        there = None if in_workspace else (released or rejected)[-1]
        command = f"cqia lineage {record_id}" + (f" --rev {there}" if there else "")
        return CqiaError(f"no record with id {record_id!r} in {here}; {'; '.join(held)}",
                         fix=f"Read it there: `{command}`")
    releases = {name: release for name, release in readable.items() if release is not None}
    unreadable = [row["rev"] for row in rows if row["state"] == "unreadable"]
    places = _places(list(releases), unreadable)
    category = category_of(record_id)
    categories = list(dict.fromkeys(name for release in releases.values() for name in release.categories))
    if category not in categories:
        return CqiaError(f"no source category {category!r} in {places}",
                         fix=f"{did_you_mean(category, categories)}Categories: {', '.join(categories) or 'none'}")
    close = next((ids for ids in (r.close_ids(record_id) for r in reversed(releases.values())) if ids), [])
    return CqiaError(f"no record with id {record_id!r} in {places}",
                     fix=f"Did you mean {close[0]!r}? Rejected records are included too" if close else
                         "Check the id; rejected records are included too")


def _places(labels: list[str], unreadable: list[str]) -> str:
    """`the workspace release or release tags v0.1, v0.2`, and the tags that could not be read."""
    tags = [label for label in labels if label != WORKSPACE]
    parts = (["the workspace release"] if WORKSPACE in labels else []) + \
        ([f"release tags {', '.join(tags)}"] if tags else [])
    text = " or ".join(parts) or "any release"
    return text + (f" (not checked: {', '.join(unreadable)}, whose data cannot be read)" if unreadable else "")


def readable_steps(found: dict[str, Any]) -> list[dict[str, Any]]:
    """A lineage line's steps with each edit step's `before` and `after`, rebuilt from its stored edits
    (lineage format 2) over the raw record; format 1 lines already hold them. A line whose edits do
    not apply (it should not happen) keeps its steps as stored."""
    from cqia.common.lineage import expand_edits
    from cqia.ingest.formats import edit_base

    steps = found["steps"]
    parse = steps[0] if steps and steps[0].get("step") == "parse" else {}
    try:
        return expand_edits(steps, edit_base(parse.get("format", ""), parse.get("layout", ""), found.get("raw")))
    except ValueError:
        return steps


def lineage_result(found: dict[str, Any], version: str) -> dict[str, Any]:
    """What `cqia lineage --json` prints of one lineage line of release `version` (before `releases`)."""
    result = {
        "id": found["id"],
        "status": "released" if found["status"] == "released" else "rejected",
        "category": found["category"],
        "source": found["source"],
        "raw": found["raw"],
        "steps": readable_steps(found),
        "release": version,
        **({"redacted": found["redacted"]} if found.get("redacted") else {}),
    }
    if result["status"] == "rejected":
        result["reason"] = found.get("reason")
        result["detail"] = found.get("detail", "")
        dup = next((s.get("duplicate_of") for s in found["steps"] if s.get("duplicate_of")), None)
        if dup:
            result["duplicate_of"] = dup
    return result


# --- history ------------------------------------------------------------------


def history(record_id: str, repo: str | Path = ".", tags: list[str] | None = None) -> dict[str, Any]:
    """The record in every release tag: present, changed, rejected or absent (Dolt's blame, for records).

    A tag whose release files cannot be read (not in the DVC cache, not on the remote its
    commit configures) is `unreadable`, with the error: never reported as absent. An id that
    no release tag nor the workspace release holds is an error naming what exists, and so is
    a history of which no tag could be read.
    """
    check_id(record_id)
    result, readable = _history(record_id, repo, tags)
    rows = result["releases"]
    unreadable = [row for row in rows if row["state"] == "unreadable"]
    if rows and len(unreadable) == len(rows):
        first = unreadable[0]["error"]
        raise ReleaseUnavailable(f"no release tag could be read ({', '.join(r['rev'] for r in rows)}); "
                                 f"the first says: {first}")
    if not any(row["status"] for row in rows) and not unreadable:
        readable[WORKSPACE] = _workspace(repo)
        if readable[WORKSPACE] is None or readable[WORKSPACE].entry(record_id) is None:
            raise _not_held(record_id, "any release", rows, readable)
    return result


def _history(record_id: str, repo: str | Path = ".", tags: list[str] | None = None
             ) -> tuple[dict[str, Any], dict[str, Release | None]]:
    """`history`'s result, and the release of each tag that could be read, by tag."""
    tags = api.release_tags(repo) if tags is None else tags
    rows = []
    readable: dict[str, Release | None] = {}
    previous_hash = prev_release = prev_entry = None
    first = last_changed = None
    for tag in tags:
        try:
            release = Release(repo, tag)
            entry = release.entry(record_id)
            readable[tag] = release
        except ReleaseUnavailable as exc:
            rows.append({"rev": tag, "state": "unreadable", "status": None, "error": str(exc)})
            continue  # what the record was there is unknown: neither a change nor an absence
        except CqiaError:  # a tag without a release (or from before the index): the record is not there
            entry = None
        if entry is None or entry["status"] != "released":
            state = "absent"
            row = {"rev": tag, "state": state, "status": entry["status"] if entry else None}
            if entry:
                row["reason"] = entry["reason"]
            rows.append(row)
            previous_hash = None
            continue
        digest = entry["record_hash"]
        if first is None:
            state = "added"
            first = last_changed = tag
        elif previous_hash is None:
            state = "added"
            last_changed = tag
        elif digest != previous_hash:
            state = "changed"
            last_changed = tag
        else:
            state = "unchanged"
        row = {"rev": tag, "state": state, "status": "released"}
        if state == "changed":
            old, new = _record_at(prev_release, prev_entry), _record_at(release, entry)
            row["fields"] = changed_fields(old, new)
        rows.append(row)
        previous_hash, prev_release, prev_entry = digest, release, entry
    return {"id": record_id, "releases": rows, "first_release": first, "last_changed": last_changed}, readable


def _record_at(release: Release, entry: dict[str, Any]) -> dict[str, Any]:
    return next(release.records_at(entry["category"], [(entry["record_offset"], entry["record_length"])]))


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


# --- diff -------------------------------------------------------------------------


@dataclass
class _Side:
    release: Release
    table: Any


def diff(rev_a: str, rev_b: str, repo: str | Path = ".", category: str | None = None) -> dict[str, Any]:
    """Added, removed and modified released records per category, keyed by id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = ["id", "category", "record_offset", "record_length", "record_hash"]
    releases = [Release(repo, rev) for rev in (rev_a, rev_b)]
    if category and all(category not in release.categories for release in releases):
        names = list(dict.fromkeys(name for release in releases for name in release.categories))
        raise CqiaError(f"no source category {category!r} in {releases[0].label} or {releases[1].label}",
                        where="--category", fix=f"{did_you_mean(category, names)}Categories there: {', '.join(names)}")
    sides = []
    for release in releases:
        if category and category not in release.categories:
            table = release.index(cols, filters=[("status", "=", "released")]).slice(0, 0)
        else:
            table = release.index(cols, filters=[("status", "=", "released")], category=category)
        table = table.set_column(1, "category", pc.cast(table["category"], pa.string()))
        sides.append(_Side(release, table))
    a, b = sides
    joined = a.table.join(b.table, keys="id", join_type="full outer", left_suffix="_a", right_suffix="_b",
                          coalesce_keys=True)
    in_a = pc.is_valid(joined["record_hash_a"])
    in_b = pc.is_valid(joined["record_hash_b"])
    added = joined.filter(pc.and_(in_b, pc.invert(in_a)))
    removed = joined.filter(pc.and_(in_a, pc.invert(in_b)))
    both = joined.filter(pc.and_(in_a, in_b))
    modified = both.filter(pc.not_equal(both["record_hash_a"], both["record_hash_b"]))

    cats: dict[str, dict[str, Any]] = {}

    def bucket(name: str) -> dict[str, Any]:
        return cats.setdefault(name, {"added": [], "removed": [], "modified": []})

    for rid, cat in zip(added["id"].to_pylist(), added["category_b"].to_pylist()):
        bucket(cat)["added"].append(rid)
    for rid, cat in zip(removed["id"].to_pylist(), removed["category_a"].to_pylist()):
        bucket(cat)["removed"].append(rid)
    # An id names its category, so a modified record is in the same category's file on both sides.
    for cat in sorted(set(modified["category_b"].to_pylist())):
        part = modified.filter(pc.equal(modified["category_b"], cat))
        olds = _records_by_id(a.release, cat, part, "a")
        news = _records_by_id(b.release, cat, part, "b")
        for rid in part["id"].to_pylist():
            bucket(cat)["modified"].append({"id": rid, "fields": changed_fields(olds[rid], news[rid])})
    for entry in cats.values():
        entry["added"].sort()
        entry["removed"].sort()
        entry["modified"].sort(key=lambda m: m["id"])
    totals = {k: sum(len(c[k]) for c in cats.values()) for k in ("added", "removed", "modified")}
    return {"a": a.release.label, "b": b.release.label, "category": category, "totals": totals,
            "categories": dict(sorted(cats.items()))}


def _records_by_id(release: Release, category: str, rows, side: str) -> dict[str, dict[str, Any]]:
    """The records of `rows` (joined index rows of one category) on one side, read in file order."""
    rows = rows.sort_by(f"record_offset_{side}")
    spans = zip(rows[f"record_offset_{side}"].to_pylist(), rows[f"record_length_{side}"].to_pylist())
    return dict(zip(rows["id"].to_pylist(), release.records_at(category, list(spans))))
