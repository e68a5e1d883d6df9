"""The repository checks its own structure: every stage has its module, schema, suite, test
and declares as deps every module of ours it imports."""

import ast
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from cqia.common.params import load_categories, load_yaml

ROOT = Path(__file__).resolve().parent.parent
DVC = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
PARAMS = load_yaml(ROOT / "params.yaml")


def stage_defs():
    for name, stage in DVC["stages"].items():
        yield name, stage.get("do", stage)


def module_of(cmd: str) -> str:
    words = cmd.split()
    return words[words.index("-m") + 1]


def local_imports(module: str, seen: set[str]) -> set[str]:
    """Files of this repository that `module` imports, transitively."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    rel = path.relative_to(ROOT).as_posix()
    if rel in seen:
        return seen
    seen.add(rel)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # A module-level __getattr__ imports lazily, only when that attribute is used (cqia.load).
    lazy = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)}
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in ("cqia", "stages") and (
                    (ROOT / (name.replace(".", "/") + ".py")).exists() or (ROOT / name.replace(".", "/")).is_dir()):
                local_imports(name, seen)
                parts = name.split(".")
                for n in range(1, len(parts)):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
                    parent = ".".join(parts[:n])
                    if (ROOT / parent.replace(".", "/") / "__init__.py").exists():
                        local_imports(parent, seen)
    return seen


def covered(path: str, deps: set[str]) -> bool:
    """`path` is a dep, or inside a directory that is."""
    return path in deps or any(path.startswith(d.rstrip("/") + "/") for d in deps)


def code_deps(deps: list[str]) -> list[str]:
    return [d for d in deps if d.startswith(("cqia/", "stages/"))]


@pytest.mark.parametrize("name, stage", list(stage_defs()))
def test_stage_declares_its_module_and_every_local_import(name, stage):
    module = module_of(stage["cmd"])
    needed = local_imports(module, set())
    deps = set(stage["deps"])
    missing = sorted(f for f in needed if not covered(f, deps) and f != "stages/__init__.py")
    assert not missing, f"stage {name} imports {missing} but dvc.yaml does not list them as deps"


@pytest.mark.parametrize("name, stage", list(stage_defs()))
def test_stage_code_deps_are_its_module_and_a_few_packages(name, stage):
    """dvc.yaml reads like the pipeline: a stage names the phases it runs, not 20 files."""
    deps = code_deps(stage["deps"])
    assert len(deps) <= 8, f"stage {name} lists {len(deps)} code deps: {deps}"
    needed = local_imports(module_of(stage["cmd"]), set())
    unused = [d for d in deps if not any(covered(f, {d}) for f in needed)]
    assert not unused, f"stage {name} depends on {unused} but imports nothing from it"


def test_aggregating_stages_do_not_depend_on_the_rules():
    """Editing a rule, a PII pattern or a normalisation reruns only the category stages."""
    for name, stage in stage_defs():
        if name != "category":
            needed = local_imports(module_of(stage["cmd"]), set())
            assert not [f for f in needed if f.startswith("cqia/ingest/")], name


@pytest.mark.parametrize("name, stage", list(stage_defs()))
def test_stage_has_schema_suite_and_a_test(name, stage):
    deps = stage["deps"]
    assert any(d.startswith("schemas/") and d.endswith(".schema.json") for d in deps)
    assert any(d.startswith("expectations/") for d in deps)
    module = module_of(stage["cmd"])
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    assert module in tests or module.split(".")[-1] in tests, f"no test mentions {module}"


def test_every_category_has_raw_files_reviews_and_suite():
    for cat in load_categories(PARAMS):
        assert (ROOT / "expectations" / f"{cat.suite}.json").is_file(), cat.name
        assert (ROOT / "data/reviews" / f"{cat.name}.jsonl").is_file(), cat.name
        # no decisions is one blank line (fileio.EMPTY_JSONL): DVC warns about an empty file at every run
        assert (ROOT / "data/reviews" / f"{cat.name}.jsonl").stat().st_size, cat.name
        for raw in cat.raw:
            assert (ROOT / "data/raw" / cat.name / raw).is_file() or (ROOT / "data/raw" / f"{cat.name}.dvc").is_file()


def test_every_expectation_suite_is_hand_written_json_without_generated_ids():
    for path in (ROOT / "expectations").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert '"id"' not in text.replace('"column": "id"', ""), path.name
        assert '"ge_cloud_id"' not in text and '"notes"' in text, path.name


@pytest.mark.process
def test_what_commands_write_by_default_is_git_ignored():
    """`cqia review export`, `cqia export` and `dvc plots show` write, by default, where git does not
    look: otherwise the next `cqia release` refuses the dirty tree."""
    from dvc.config import Config

    from cqia.cli.export import EXPORT_DIR
    from cqia.cli.review import sheet_paths
    from cqia.common.layout import OUT_DIR

    plots = Path(Config(dvc_dir=str(ROOT / ".dvc")).load_one("repo").get("plots", {}).get("out_dir", "dvc_plots"))
    assert plots.parts[0] == OUT_DIR.as_posix()                 # one work directory for all of them
    written = [*sheet_paths(None, "human_value"), EXPORT_DIR / "dataset_info.json", EXPORT_DIR / "data.json",
               plots / "index.html", Path("dvc_plots/index.html")]  # the last: DVC's default, without the config
    proc = subprocess.run(["git", "check-ignore", *map(str, written)], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.splitlines() == [str(p) for p in written]


def test_the_record_fields_are_the_schemas():
    """cqia.common.record spells the record's fields once; the schema is their definition."""
    import orjson

    from cqia.common.record import DEFAULTABLE_KEYS, RECORD_KEYS, TEXT_FIELDS

    schema = orjson.loads((ROOT / "schemas/record.schema.json").read_bytes())
    assert RECORD_KEYS == tuple(schema["properties"]) == tuple(schema["required"])
    assert all(schema["properties"][k]["type"] == "string" for k in TEXT_FIELDS)
    assert set(DEFAULTABLE_KEYS) == set(RECORD_KEYS) - {"id", *TEXT_FIELDS}
