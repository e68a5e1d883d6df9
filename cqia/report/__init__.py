"""Report: statistics as DVC metrics and plots, and the Data Docs pages of the gate runs."""
