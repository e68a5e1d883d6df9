"""The evaluation set of the cleaning rules: records.yaml, judged by evaluate.py, reported by report.py."""
