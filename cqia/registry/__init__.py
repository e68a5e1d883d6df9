"""The registry over releases: reading (api), auditing, releasing, review sheets, export."""
