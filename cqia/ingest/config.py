"""A category's params, checked in full: its format, its rules' knobs and its normalisation.

`cqia.common.params` checks the shape every stage relies on; this adds what only the category
stage uses, so that a typo in a knob fails the category stage and `cqia check`, naming the knob and
the alternatives, while editing a rule does not rerun the stages that never apply one.
"""

from __future__ import annotations

from typing import Any

from cqia.common.errors import CqiaError
from cqia.common.params import Category, category_from_params, load_categories, load_category, rule_defaults
from cqia.ingest import normalize
from cqia.ingest.formats import FORMAT_NAMES
from cqia.ingest.rules import RuleSet


def check_category(category: Category, where: str = "params.yaml") -> Category:
    key = f"{where}: categories.{category.name}"
    if category.format not in FORMAT_NAMES:
        raise CqiaError(f"unknown format {category.format!r}", where=f"{key}.format",
                        fix=f"Available formats: {list(FORMAT_NAMES)}")
    RuleSet(category.rules, f"{key}.rules")
    normalize.validate(category.normalize, f"{key}.normalize")
    return category


def check_rule_defaults(params: Any, where: str = "params.yaml") -> dict[str, Any]:
    """Params' `rule_defaults`, its knobs checked on their own (so a typo there is named there)."""
    defaults = rule_defaults(params, where)
    RuleSet(defaults, f"{where}: rule_defaults")
    return defaults


def checked_category(name: str, entry: Any, where: str = "params.yaml",
                     defaults: dict[str, Any] | None = None) -> Category:
    """One params entry, its rules merged over `defaults` (params' `rule_defaults`), checked in full."""
    RuleSet(defaults, f"{where}: rule_defaults")
    return check_category(category_from_params(name, entry, where, defaults), where)


def load_checked_category(params: dict[str, Any], name: str, where: str = "params.yaml") -> Category:
    check_rule_defaults(params, where)
    return check_category(load_category(params, name, where), where)


def load_checked_categories(params: dict[str, Any], where: str = "params.yaml") -> list[Category]:
    check_rule_defaults(params, where)
    return [check_category(c, where) for c in load_categories(params, where)]
