"""Gates: the JSON Schema, the accounting check and the Great Expectations suites."""
