"""A release in the tools consumers use: Hugging Face `datasets`, alpaca / sharegpt JSON for
LLaMA-Factory, and progress bars that stay out of pipes. Offline: `datasets` runs with
HF_HUB_OFFLINE and its caches inside the test's temp dir."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import shutil
import struct
import subprocess
import termios
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from conftest import BIN, ROOT, as_registry, make_repo, release_records_bytes
from cqia.common.errors import CqiaError
from cqia.common.params import load_yaml
from cqia.common.pii_kinds import LABELS as PII_LABELS
from cqia.common.pii_kinds import MASKS as PII_MASKS
from cqia.common.pii_kinds import PII_FIELDS
from cqia.common.progress import jsonl_records, progress
from cqia.publish.card import PiiLegend, dataset_card, features, parquet_schema
from cqia.registry.export import (
    add_dataset_info,
    dataset_info_entry,
    dataset_name,
    file_name,
    prompt,
    rev_label,
    to_alpaca,
    to_firefly,
    to_sharegpt,
)

SCHEMA = orjson.loads((ROOT / "schemas/record.schema.json").read_bytes())
LEGEND = PiiLegend(PII_FIELDS, PII_LABELS, PII_MASKS)
# The metadata keys of a Hugging Face dataset card, as the Hub documents them (hub-docs, datasetcard.md).
HUB_CARD_KEYS = {"language", "license", "license_name", "license_link", "license_details", "tags",
                 "annotations_creators", "language_creators", "language_details", "pretty_name", "size_categories",
                 "source_datasets", "task_categories", "task_ids", "paperswithcode_id", "configs", "dataset_info",
                 "extra_gated_fields", "extra_gated_prompt", "train-eval-index"}
DATASET_INFO_KEYS = {"config_name", "features", "splits", "download_size", "dataset_size"}


def record(rid, instruction, output, input="", domain=None, major=None):
    return {"id": rid, "instruction": instruction, "input": input, "output": output,
            "task_type": {"major": major if major is not None else ["问答"], "minor": []},
            "domain": domain if domain is not None else [], "metadata": "", "answer_from": "human",
            "human_verified": True, "copyright": "test"}


RECORDS = [
    record("poison-0001", "自闭症孩子是不是就是父母没教好？", "不是。自闭症是一种神经发育障碍，与教养方式无关。",
           domain=["人类价值观"]),
    record("hv-0001", "下列說法正確的是：", "B，因為……", input="A．甲\u2028B．乙"),
    record("zhihu-0001", "ＡＩ會取代程序員嗎？", "短期內不會。\n\n「工具」與「人」是兩回事。", domain=[]),
]


# ---------------------------------------------------------------- converters (fast)

def test_alpaca_keeps_instruction_input_output_and_id():
    assert [to_alpaca(r) for r in RECORDS[1:2]] == [
        {"instruction": "下列說法正確的是：", "input": "A．甲\u2028B．乙", "output": "B，因為……", "id": "hv-0001"}]


def test_sharegpt_is_one_human_and_one_gpt_turn_with_the_input_after_a_newline():
    assert to_sharegpt(RECORDS[1]) == {"conversations": [
        {"from": "human", "value": "下列說法正確的是：\nA．甲\u2028B．乙"},
        {"from": "gpt", "value": "B，因為……"}], "id": "hv-0001"}
    assert prompt(RECORDS[0]) == RECORDS[0]["instruction"]  # no input: no trailing newline
    assert "system" not in to_sharegpt(RECORDS[0])  # COIG-CQIA has no system prompt


def test_firefly_is_one_human_and_assistant_turn_with_the_id_and_source_category():
    assert to_firefly(RECORDS[1]) == {"conversation_id": "hv-0001", "category": "hv", "conversation": [
        {"human": "下列說法正確的是：\nA．甲\u2028B．乙", "assistant": "B，因為……"}]}
    assert to_firefly(RECORDS[0])["conversation"][0]["human"] == RECORDS[0]["instruction"]
    assert (file_name("firefly", "coig_cqia_v0.1_firefly"), file_name("alpaca", "coig_cqia_v0.1_alpaca")) == (
        "coig_cqia_v0.1_firefly.jsonl", "coig_cqia_v0.1_alpaca.json")
    assert dataset_info_entry("firefly", "x.jsonl") is None                  # LLaMA-Factory does not read it


def test_a_record_without_output_is_named():
    bad = dict(RECORDS[0])
    del bad["output"]
    with pytest.raises(CqiaError) as err:
        to_alpaca(bad)
    assert str(err.value) == ("record poison-0001: field 'output' is missing, not a string. "
                              "Export a release built by cqia-registry (its records pass the schema)")
    with pytest.raises(CqiaError, match=r"field 'input' is a int, not a string"):
        to_sharegpt(dict(RECORDS[0], input=3))


def test_dataset_info_entries_are_llama_factorys():
    assert dataset_info_entry("alpaca", "coig_cqia_alpaca.json") == {
        "file_name": "coig_cqia_alpaca.json", "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    assert dataset_info_entry("sharegpt", "x.json") == {
        "file_name": "x.json", "formatting": "sharegpt", "columns": {"messages": "conversations"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
    assert dataset_name("alpaca") == "coig_cqia_workspace_alpaca"
    assert dataset_name("sharegpt", "zhihu", "v0.1") == "coig_cqia_v0.1_zhihu_sharegpt"
    with pytest.raises(CqiaError) as err:
        dataset_name("openai")
    assert str(err.value) == "unknown export format 'openai'. Available formats: ['alpaca', 'sharegpt', 'firefly']"


def test_names_say_which_revision_was_exported():
    assert [rev_label(r) for r in (None, "v0.1", "feature/x", "HEAD~1", "3f2a9c1")] == [
        "workspace", "v0.1", "feature_x", "HEAD_1", "3f2a9c1"]
    assert dataset_name("alpaca", rev="v0.1") != dataset_name("alpaca", rev="v0.2")


def test_dataset_info_replaces_a_different_description_only_when_forced():
    entry = dataset_info_entry("alpaca", "coig_cqia_v0.1_alpaca.json")
    existing = {"coig_cqia_v0.1_alpaca": dict(entry, file_name="mine.json")}
    assert add_dataset_info({"coig_cqia_v0.1_alpaca": entry}, "coig_cqia_v0.1_alpaca", entry) == {
        "coig_cqia_v0.1_alpaca": entry}                                          # the same: fine
    with pytest.raises(CqiaError) as err:
        add_dataset_info(existing, "coig_cqia_v0.1_alpaca", entry, where="out/dataset_info.json")
    assert str(err.value) == ('out/dataset_info.json: dataset "coig_cqia_v0.1_alpaca" is already described, '
                              'differently. Pass --force to overwrite it, or write elsewhere with --out')
    assert add_dataset_info(existing, "coig_cqia_v0.1_alpaca", entry, force=True) == {"coig_cqia_v0.1_alpaca": entry}


def test_dataset_info_keeps_the_datasets_already_there():
    existing = {"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}
    merged = add_dataset_info(existing, "coig_cqia_alpaca", {"file_name": "coig_cqia_alpaca.json"})
    assert list(merged) == ["alpaca_en_demo", "coig_cqia_alpaca"]
    assert existing == {"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}  # not mutated
    with pytest.raises(CqiaError) as err:
        add_dataset_info([], "x", {}, where="out/dataset_info.json")
    assert str(err.value) == ("out/dataset_info.json: is a JSON list, not an object of dataset descriptions. "
                              "Fix or remove it; cqia export adds its entry to an existing file")


# ---------------------------------------------------------------- progress (fast)

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_silent_when_the_stream_is_not_a_terminal():
    pipe = io.StringIO()
    assert list(progress(range(5), "merge zhihu", stream=pipe)) == [0, 1, 2, 3, 4]
    assert pipe.getvalue() == ""


def test_progress_draws_a_bar_on_a_terminal():
    tty = Terminal()
    assert list(progress(range(5), "merge zhihu", total=5, stream=tty)) == [0, 1, 2, 3, 4]
    assert "merge zhihu" in tty.getvalue()


def test_a_bar_has_a_total_counted_only_when_it_is_shown():
    """The category stage's bar shows n/total and an ETA; the count runs only on a terminal."""
    counted = []

    def total():
        counted.append(1)
        return 5

    assert list(progress(range(5), "zhihu train.jsonl", total=total, stream=io.StringIO())) == list(range(5))
    assert counted == []
    tty = Terminal()
    list(progress(range(5), "zhihu train.jsonl", total=total, stream=tty))
    assert counted == [1] and "0/5 " in tty.getvalue()   # the bar shows the total from its first draw


def test_records_of_a_raw_file_are_its_lines_and_an_array_has_no_count(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_bytes(b'{"a": 1}\n{"a": "\xe4\xb8\xad"}\n{"a": 3}')           # no final newline
    assert jsonl_records(jsonl) == 3
    assert jsonl_records(jsonl, block=4) == 3                                   # lines across blocks
    array = tmp_path / "part1.json"
    array.write_bytes(b'\xef\xbb\xbf\n  [{"a": 1},\n {"a": 2}]\n')
    assert jsonl_records(array) is None


# ---------------------------------------------------------------- datasets (offline)

@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """`datasets`, offline, with every cache in a temp dir; any HTTP request would fail fast."""
    home = tmp_path_factory.mktemp("hf")
    env = {"HF_HOME": str(home), "HF_DATASETS_CACHE": str(home / "datasets"),
           "HF_MODULES_CACHE": str(home / "modules"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        import datasets
        import huggingface_hub.constants

        # datasets reads its config at import; if another test imported it first, set it here too
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
        mp.setattr(datasets.config, "HF_MODULES_CACHE", home / "modules")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        datasets.disable_progress_bars()
        yield datasets, str(home / "datasets")


def card_category(name: str, **fields) -> dict:
    """One category as merge hands it to the card."""
    return {"name": name, "raw": 10, "released": 8, "rejected": 2, "rejected_by_reason": {"duplicate_of": 2},
            "source": "", "source_dataset": "", "construction": "", "license": "apache-2.0", "license_terms": "",
            "copyright": "", "pii": {}, "num_bytes": 1000, "parquet_bytes": 900, **fields}


def card_header(card: str) -> dict:
    """The card's YAML header, parsed as the Hub and `datasets` parse it (safe YAML)."""
    from ruamel.yaml import YAML

    assert card.startswith("---\n")
    head, sep, _ = card[4:].partition("\n---\n")
    assert sep, "the header has no closing ---"
    return YAML(typ="safe", pure=True).load(head)


def test_card_header_has_the_hubs_keys_features_from_the_schema_and_split_sizes():
    cats = [card_category("poison", released=39, num_bytes=25116, parquet_bytes=20438, source_dataset="100PoisonMpts"),
            card_category("hv", released=24, num_bytes=11568, parquet_bytes=11418, source_dataset="BAAI/COIG"),
            card_category("empty", released=0, num_bytes=0, parquet_bytes=500, source_dataset="BAAI/COIG")]
    header = card_header(dataset_card({"version": "v0.2"}, cats, RECORDS[0], SCHEMA, LEGEND))
    assert set(header) <= HUB_CARD_KEYS, set(header) - HUB_CARD_KEYS
    assert header["source_datasets"] == ["100PoisonMpts", "BAAI/COIG"]
    assert header["license"] == "apache-2.0"                          # one licence: the id, not a list
    assert [c["config_name"] for c in header["configs"]] == ["all", "poison", "hv"]   # "empty" has no records
    info = {i["config_name"]: i for i in header["dataset_info"]}
    assert list(info) == ["all", "poison", "hv"]
    for i in info.values():
        assert set(i) == DATASET_INFO_KEYS
        assert [f["name"] for f in i["features"]] == list(SCHEMA["properties"])   # every field, schema order
    assert info["poison"]["splits"] == [{"name": "train", "num_bytes": 25116, "num_examples": 39}]
    assert (info["poison"]["download_size"], info["poison"]["dataset_size"]) == (20438, 25116)
    assert info["all"]["splits"] == [{"name": "train", "num_bytes": 25116 + 11568, "num_examples": 39 + 24}]
    assert info["all"]["download_size"] == 20438 + 11418
    features_of = {f["name"]: f for f in info["all"]["features"]}
    assert features_of["task_type"] == {"name": "task_type", "struct": [{"name": "major", "sequence": "string"},
                                                                         {"name": "minor", "sequence": "string"}]}
    assert features_of["human_verified"] == {"name": "human_verified", "dtype": "bool"}
    assert features_of["answer_from"] == {"name": "answer_from", "dtype": "string"}  # an enum of strings


def test_card_features_and_fields_follow_the_schema():
    schema = json.loads(json.dumps(SCHEMA))
    schema["properties"]["score"] = {"description": "A reviewer's score.", "type": "integer"}
    card = dataset_card({"version": "v0.1"}, [card_category("c")], None, schema, LEGEND)
    assert card_header(card)["dataset_info"][0]["features"][-1] == {"name": "score", "dtype": "int64"}
    assert "| `score` | `integer` | A reviewer's score. |" in card
    assert "| `answer_from` | `string` | Who wrote the answer. One of `human`, `llm`, `expert`. |" in card
    with pytest.raises(CqiaError) as err:
        features({"properties": {"x": {"type": ["string", "null"]}}})
    assert str(err.value) == ("schemas/record.schema.json: /properties/x: type ['string', 'null'] has no Hugging Face "
                              "feature type. Give the property one JSON type (string, boolean, integer, number, array, "
                              "object)")


def test_card_states_each_categorys_licence():
    cats = [card_category("poison", license="apache-2.0", copyright="100PoisonMpts, Apache-2.0"),
            card_category("zhihu", license="other", license_terms="作者授权，仅供研究使用", copyright="作者授权，仅供研究使用"),
            card_category("misc", license="unknown")]
    card = dataset_card({"version": "v0.1"}, cats, None, SCHEMA, LEGEND)
    assert card_header(card)["license"] == ["apache-2.0", "other", "unknown"]
    assert "| poison | `apache-2.0` | the `apache-2.0` licence | 100PoisonMpts, Apache-2.0 |" in card
    assert "| zhihu | `other` | 作者授权，仅供研究使用 | 作者授权，仅供研究使用 |" in card
    assert "| misc | `unknown` | not stated in the registry's params.yaml | - |" in card
    assert "cc-by-nc-4.0" not in card


def test_card_describes_the_pii_rules_of_each_category():
    cats = [card_category("poison", pii={"email": "mask", "phone": "mask", "id_card": "reject", "qq": "mask"},
                          rejected_by_reason={"pii": 3}),
            card_category("plain", pii={"email": "mask"})]
    card = dataset_card({"version": "v0.1"}, cats, None, SCHEMA, LEGEND)
    section = card.split("## Personal and Sensitive Information\n", 1)[1].split("\n## ", 1)[0]
    assert ("| poison | an e-mail address → `[EMAIL]`; a phone number → `[PHONE]`; a QQ number → `[QQ]` | a 身份证号 "
            "| - | 3 |") in section
    assert "| plain | an e-mail address → `[EMAIL]` | - | a 身份证号, a phone number, a QQ number | 0 |" in section
    assert "`instruction`, `input`, `output`, `metadata`, `copyright` are searched" in section


def test_card_summarises_the_filtering():
    cats = [card_category("a", raw=10, released=6, rejected=4,
                          rejected_by_reason={"duplicate_of": 1, "near_duplicate_of": 2, "too_short": 1}),
            card_category("b", raw=5, released=4, rejected=1, rejected_by_reason={"near_duplicate_of": 1})]
    neardup = {"enabled": True, "ngram": 5, "threshold": 0.8, "near_duplicates": 3, "clusters": 2}
    card = dataset_card({"version": "v0.1"}, cats, None, SCHEMA, LEGEND, neardup)
    assert "| a | 10 | 6 | 4 | `duplicate_of` 1, `near_duplicate_of` 2, `too_short` 1 |" in card
    assert "| **total** | 15 | 10 | 5 | `duplicate_of` 1, `near_duplicate_of` 3, `too_short` 1 |" in card
    assert "1 rejected as `duplicate_of`." in card
    assert ("Near duplicates (MinHash LSH over character 5-grams of instruction, input and output; estimated Jaccard "
            "similarity at least 0.8 for the whole record and for the output): 3 rejected as `near_duplicate_of`, "
            "in 2 clusters.") in card
    off = dataset_card({"version": "v0.1"}, cats, None, SCHEMA, LEGEND, dict(neardup, enabled=False))
    assert "Near-duplicate detection was off for this release." in off
    assert "`git show v0.1`" in card                                 # the changelog is the tag's message


def test_merge_refuses_a_release_wide_licence(tmp_path):
    from stages import merge

    params = tmp_path / "params.yaml"
    params.write_text("release: {version: v0.1, license: cc-by-nc-4.0}\ncategories: {}\n", encoding="utf-8")
    out = {k: str(tmp_path / k) for k in ("publish", "lineage", "manifest.json", "README.md", "metrics.json")}
    with pytest.raises(CqiaError) as err:
        merge.main(["--params", str(params), "--publish-dir", out["publish"], "--lineage-dir", out["lineage"],
                    "--schema", str(ROOT / "schemas/record.schema.json"),
                    "--suite", str(ROOT / "expectations/release.json"), "--manifest", out["manifest.json"],
                    "--card", out["README.md"], "--metrics", out["metrics.json"]])
    assert str(err.value) == (f"{params}: release.license: the licence is per source category. Remove it and set "
                              "categories.<name>.license (and license_terms for `other`)")


def write_release(root: Path, categories: dict[str, list[dict]]) -> Path:
    """A release directory as publish and merge lay it out: Parquet + JSON Lines per category, the card."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    full = []
    for name, records in categories.items():
        (root / name).mkdir()
        pq.write_table(pa.Table.from_pylist(records, schema=parquet_schema(SCHEMA)), root / name / "train.parquet")
        (root / name / "train.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        full += records
    summary = [card_category(n, released=len(r), num_bytes=pq.read_table(root / n / "train.parquet").nbytes,
                             parquet_bytes=(root / n / "train.parquet").stat().st_size)
               for n, r in categories.items()]
    (root / "README.md").write_text(dataset_card({"version": "v0.1"}, summary, full[0] if full else None, SCHEMA,
                                                 LEGEND), encoding="utf-8")
    manifest = {"version": "v0.1", "released": len(full),
                "categories": {n: {"released": len(r)} for n, r in categories.items()}}
    (root / "manifest.json").write_bytes(orjson.dumps(manifest))
    return root


def test_card_configs_load_with_datasets_with_typed_columns(hf, tmp_path):
    datasets, cache = hf
    release = write_release(tmp_path / "release", {"poison": RECORDS[:1], "pending": [], "zhihu": RECORDS[2:]})
    full = datasets.load_dataset(str(release), cache_dir=cache)["train"]  # the default config: all
    assert full["id"] == ["poison-0001", "zhihu-0001"]
    zhihu = datasets.load_dataset(str(release), "zhihu", cache_dir=cache)["train"]
    assert zhihu.to_list() == RECORDS[2:]
    # Parquet carries the registry's types: a column of empty lists is still a list of strings
    assert zhihu.features["domain"] == datasets.List(datasets.Value("string"))
    # a category with no released record has no config (datasets cannot load an empty file)
    with pytest.raises(ValueError, match="pending"):
        datasets.load_dataset(str(release), "pending", cache_dir=cache)
    # the card's features, read by datasets' own parser, are the Parquet files' types, and its split
    # sizes are what datasets counts (it checks num_examples itself while loading)
    from huggingface_hub import DatasetCard

    infos = datasets.info.DatasetInfosDict.from_dataset_card_data(
        DatasetCard((release / "README.md").read_text(encoding="utf-8")).data)
    assert sorted(infos) == ["all", "poison", "zhihu"]
    for config, loaded in (("all", full), ("zhihu", zhihu)):
        assert infos[config].features == datasets.Features.from_arrow_schema(parquet_schema(SCHEMA)) == loaded.features
        assert infos[config].splits["train"].num_examples == loaded.num_rows
    assert infos["zhihu"].splits["train"].num_bytes == zhihu.info.splits["train"].num_bytes
    # `all` adds up its files' sizes; datasets measures them joined, where the bits of a boolean
    # column share a byte: one byte apart per file boundary at most
    assert 0 <= infos["all"].splits["train"].num_bytes - full.info.splits["train"].num_bytes <= 1


def test_card_refuses_a_category_named_all():
    with pytest.raises(CqiaError) as err:
        dataset_card({"version": "v0.1"}, [card_category("all")], None, SCHEMA, LEGEND)
    assert str(err.value) == ("params.yaml: categories.all: category name 'all' clashes with the dataset card's "
                              "config of every record. Rename the category")


# ---------------------------------------------------------------- cqia export on a working tree (fast)

def run_export(*args):
    from cqia.cli import cli

    return CliRunner().invoke(cli, ["export", *args])


def test_export_adds_its_entry_to_an_existing_dataset_info(tmp_path, monkeypatch):
    write_release(tmp_path / "data" / "release", {"poison": RECORDS[:1], "hv": RECORDS[1:2], "zhihu": RECORDS[2:]})
    monkeypatch.chdir(as_registry(tmp_path))
    out = tmp_path / "LLaMA-Factory" / "data"
    out.mkdir(parents=True)
    (out / "dataset_info.json").write_text('{"identity": {"file_name": "identity.json"}}')
    result = run_export("--format", "alpaca", "--category", "hv", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == (f"Exported 1 record of release v0.1 (category hv) as alpaca:\n"
                             f"  {out.as_posix()}/coig_cqia_workspace_hv_alpaca.json\n"
                             f"  {out.as_posix()}/dataset_info.json  (dataset \"coig_cqia_workspace_hv_alpaca\")\n")
    info = json.loads((out / "dataset_info.json").read_text())
    assert list(info) == ["identity", "coig_cqia_workspace_hv_alpaca"]
    assert json.loads((out / "coig_cqia_workspace_hv_alpaca.json").read_text(encoding="utf-8")) == [
        to_alpaca(RECORDS[1])]


def test_export_firefly_writes_json_lines_and_no_dataset_info(tmp_path, monkeypatch):
    write_release(tmp_path / "data" / "release", {"poison": RECORDS[:1], "hv": RECORDS[1:2], "zhihu": RECORDS[2:]})
    monkeypatch.chdir(as_registry(tmp_path))
    result = run_export("--format", "firefly")
    assert result.exit_code == 0, result.output
    assert result.output == ("Exported 3 records of release v0.1 (all categories) as firefly:\n"
                             "  out/export/coig_cqia_workspace_firefly.jsonl\n")
    exported = tmp_path / "out" / "export" / "coig_cqia_workspace_firefly.jsonl"
    assert [json.loads(line) for line in exported.read_text(encoding="utf-8").split("\n")[:-1]] == [
        to_firefly(r) for r in RECORDS]                # one example a line; U+2028 stays inside its string
    assert [p.name for p in exported.parent.iterdir()] == [exported.name]


def test_export_overwrites_a_different_file_only_when_forced(tmp_path, monkeypatch):
    write_release(tmp_path / "data" / "release", {"zhihu": RECORDS[2:]})
    monkeypatch.chdir(as_registry(tmp_path))
    assert run_export("--format", "alpaca").exit_code == 0
    exported = tmp_path / "out" / "export" / "coig_cqia_workspace_alpaca.json"
    first = exported.read_bytes()
    assert run_export("--format", "alpaca").exit_code == 0                  # the same export again: fine
    shutil.rmtree(tmp_path / "data" / "release")                            # the working tree's release changed
    write_release(tmp_path / "data" / "release", {"zhihu": RECORDS[1:]})
    result = run_export("--format", "alpaca")
    assert (result.exit_code, result.output) == (1, (
        "error: out/export/coig_cqia_workspace_alpaca.json: already exists, with other content than this export. "
        "Pass --force to overwrite it, or write elsewhere with --out\n"))
    assert exported.read_bytes() == first
    assert sorted(p.name for p in exported.parent.iterdir()) == ["coig_cqia_workspace_alpaca.json", "dataset_info.json"]
    assert run_export("--format", "alpaca", "--force").exit_code == 0
    assert json.loads(exported.read_text(encoding="utf-8")) == [to_alpaca(r) for r in RECORDS[1:]]


def test_export_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(as_registry(tmp_path))
    result = run_export("--format", "alpaca")
    assert result.exit_code == 1
    assert result.output == ("error: data/release/manifest.json: no release built in this working tree. "
                             "Run `make repro` (or `dvc repro`), or read a tagged release at its revision, e.g. v0.1\n")
    write_release(tmp_path / "data" / "release", {"zhihu": RECORDS[2:]})
    result = run_export("--format", "alpaca", "--category", "x")
    assert result.output == ("error: data/release: release v0.1 has no category 'x'. "
                             "Available categories: ['zhihu']\n")
    result = run_export("--format", "alpaca", "--category", "zhihi")
    assert result.output == ("error: data/release: release v0.1 has no category 'zhihi'. "
                             "Did you mean 'zhihu'? Available categories: ['zhihu']\n")
    (tmp_path / "out" / "export").mkdir(parents=True)
    (tmp_path / "out" / "export" / "dataset_info.json").write_text("{not json")
    result = run_export("--format", "sharegpt")
    assert result.output.startswith("error: out/export/dataset_info.json: not valid JSON (")
    assert result.output.endswith("). Fix or remove it; cqia export adds its entry to an existing file\n")
    assert sorted(p.name for p in (tmp_path / "out" / "export").iterdir()) == ["dataset_info.json"]  # nothing written


# ---------------------------------------------------------------- a release built by dvc repro (e2e)

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("eco"))
    proc = repo.dvc("repro")
    return repo, proc


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().split(b"\n") if line]


def release_records(release: Path) -> list[dict]:
    """Every released record in release order (conftest.release_records_bytes, parsed)."""
    return [orjson.loads(line) for line in release_records_bytes(release).splitlines()]


@pytest.mark.e2e
def test_dvc_repro_of_the_sample_warns_of_no_empty_file(built):
    # files with no review or dedup decisions are one blank line, not empty (DVC warns of those)
    _, repro = built
    assert "is empty" not in repro.stdout + repro.stderr


@pytest.mark.e2e
def test_built_release_loads_with_datasets(built, hf):
    repo, _ = built
    datasets, cache = hf
    release = repo.file("data/release")
    manifest = json.loads((release / "manifest.json").read_text())
    full = datasets.load_dataset(str(release), cache_dir=cache)["train"]
    assert full.to_list() == release_records(release)  # same records, same order, same values
    for name, cat in manifest["categories"].items():
        ds = datasets.load_dataset(str(release), name, cache_dir=cache)["train"]
        assert ds.num_rows == cat["released"] > 0
        assert ds["id"] == [r["id"] for r in read_jsonl(release / name / "train.jsonl")]
    parquet = datasets.load_dataset("parquet", data_files={"train": str(release / "*" / "train.parquet")},
                                    cache_dir=cache)["train"]
    assert sorted(parquet["id"]) == sorted(full["id"])
    assert parquet.features == full.features
    # the card's split sizes are what datasets counts (num_examples it checks while loading)
    from huggingface_hub import DatasetCard

    infos = datasets.info.DatasetInfosDict.from_dataset_card_data(
        DatasetCard((release / "README.md").read_text(encoding="utf-8")).data)
    for name, cat in manifest["categories"].items():
        loaded = datasets.load_dataset(str(release), name, cache_dir=cache)["train"]
        assert infos[name].splits["train"].num_bytes == loaded.info.splits["train"].num_bytes
        assert infos[name].splits["train"].num_examples == cat["released"]
    assert 0 <= infos["all"].splits["train"].num_bytes - full.info.splits["train"].num_bytes < len(manifest["categories"])
    assert infos["all"].splits["train"].num_examples == manifest["released"]
    assert infos["all"].features == full.features
    # the licence of every category agrees with the copyright of its records
    for c in card_header((release / "README.md").read_text(encoding="utf-8"))["license"]:
        assert c in ("apache-2.0", "other")
    params = load_yaml(repo.file("params.yaml"))["categories"]
    for name in manifest["categories"]:
        licence = params[name]["license"]
        for r in read_jsonl(release / name / "train.jsonl"):
            assert licence == "other" or licence in r["copyright"].lower(), (name, r["id"], r["copyright"])


@pytest.mark.e2e
def test_export_every_format_read_back_by_its_documented_fields(built, hf, tmp_path):
    repo, _ = built
    datasets, cache = hf
    release = release_records(repo.file("data/release"))
    out = tmp_path / "export"
    for fmt in ("alpaca", "sharegpt", "firefly"):
        proc = repo.cqia("export", "--format", fmt, "--out", str(out), "--json")
        assert proc.stderr == ""  # stderr is a pipe: no progress bar
        assert json.loads(proc.stdout)["records"] == len(release)
    info = json.loads((out / "dataset_info.json").read_text())
    assert sorted(info) == ["coig_cqia_workspace_alpaca", "coig_cqia_workspace_sharegpt"]

    alpaca = info["coig_cqia_workspace_alpaca"]
    assert alpaca["formatting"] == "alpaca"
    rows = datasets.load_dataset("json", data_files=str(out / alpaca["file_name"]), cache_dir=cache)["train"]
    cols = alpaca["columns"]
    assert [(r[cols["prompt"]], r[cols["query"]], r[cols["response"]]) for r in rows] == \
        [(r["instruction"], r["input"], r["output"]) for r in release]

    sharegpt = info["coig_cqia_workspace_sharegpt"]
    assert sharegpt["formatting"] == "sharegpt"
    rows = datasets.load_dataset("json", data_files=str(out / sharegpt["file_name"]), cache_dir=cache)["train"]
    tags = sharegpt["tags"]
    turns = [[(t[tags["role_tag"]], t[tags["content_tag"]]) for t in r[sharegpt["columns"]["messages"]]]
             for r in rows]
    assert turns == [[(tags["user_tag"], "\n".join(filter(None, (r["instruction"], r["input"])))),
                      (tags["assistant_tag"], r["output"])] for r in release]
    assert rows["id"] == [r["id"] for r in release]

    firefly = read_jsonl(out / "coig_cqia_workspace_firefly.jsonl")       # as Firefly reads it: line by line
    assert [(e["conversation_id"], e["category"], e["conversation"]) for e in firefly] == [
        (r["id"], r["id"].rpartition("-")[0],
         [{"human": "\n".join(filter(None, (r["instruction"], r["input"]))), "assistant": r["output"]}])
        for r in release]


def on_a_terminal(repo, *cmd) -> str:
    """Run `cmd` in `repo` with stderr a terminal (a pty 100 columns wide); return what it drew there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.run(cmd, cwd=repo.path, env=repo.env, stdout=subprocess.PIPE, stderr=slave, timeout=300)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.e2e
def test_progress_shows_on_a_terminal_and_never_in_a_pipe(built, tmp_path):
    repo, repro = built
    # dvc repro ran every stage with stderr a pipe: no bar anywhere in its output
    assert "rec/s" not in repro.stdout + repro.stderr and "\r" not in repro.stdout + repro.stderr
    # with stderr a terminal, a publish stage and cqia export draw their bars
    drawn = on_a_terminal(repo, str(BIN / "python"), "-m", "stages.publish", "--category", "zhihu",
                          "--accepted", "data/stages/zhihu/accepted.jsonl.zst",
                          "--accepted-lineage", "data/stages/zhihu/lineage.jsonl.zst", "--rejects", "data/stages/zhihu/rejects.jsonl",
                          "--category-metrics", "data/stages/zhihu/metrics.json", "--dedup", "data/dedup/zhihu.jsonl",
                          "--schema", "schemas/record.schema.json", "--suite", "expectations/publish.json",
                          "--out", str(tmp_path / "release/zhihu"), "--lineage", str(tmp_path / "release/lineage/zhihu"),
                          "--summary", str(tmp_path / "publish/zhihu.json"))
    assert "publish zhihu" in drawn and "rec/s" in drawn
    assert "export alpaca" in on_a_terminal(repo, str(BIN / "cqia"), "export", "--format", "alpaca",
                                            "--out", str(tmp_path / "export"))
