"""The record's fields, in the order of schemas/record.schema.json (its one definition).

The schema is a file of the registry, not of the installed package, so the names are spelled
here once and tests/test_structure.py checks them against the schema's `properties` and
`required`; every other module takes them from here.
"""

RECORD_KEYS = ("id", "instruction", "input", "output", "task_type", "domain", "metadata",
               "answer_from", "human_verified", "copyright")
TEXT_FIELDS = ("instruction", "input", "output")          # what normalisation and the rules read
DEFAULTABLE_KEYS = tuple(k for k in RECORD_KEYS if k not in ("id", *TEXT_FIELDS))   # a category's `defaults`
