"""The JSON Schema gate: a compiled validator for the bulk path, jsonschema to explain.

jsonschema-rs checks about a million records a second; when it says no,
jsonschema's Draft 2020-12 validator names the failing path and keyword.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import orjson

from cqia.common.errors import CqiaError


class RecordSchema:
    def __init__(self, schema: dict[str, Any]):
        jsonschema.Draft202012Validator.check_schema(schema)
        self.schema = schema
        self.version = schema.get("version", "")
        self._fast = jsonschema_rs.validator_for(schema)
        self._explainer = jsonschema.Draft202012Validator(schema)

    @classmethod
    def from_file(cls, path: str | Path) -> "RecordSchema":
        try:
            return cls(orjson.loads(Path(path).read_bytes()))
        except (OSError, orjson.JSONDecodeError, jsonschema.SchemaError) as exc:
            raise CqiaError(f"cannot load the schema ({exc})", where=str(path)) from None

    def is_valid(self, record: dict[str, Any]) -> bool:
        return self._fast.is_valid(record)

    def explain(self, record: dict[str, Any]) -> str:
        """One line naming the failing path and what is wrong, e.g. '/answer_from: ...'."""
        error = jsonschema.exceptions.best_match(self._explainer.iter_errors(record))
        if error is None:
            return ""
        path = "/" + "/".join(str(p) for p in error.absolute_path)
        message = error.message
        if len(message) > 200:
            message = message[:200] + "..."
        return f"{path}: {message}"
