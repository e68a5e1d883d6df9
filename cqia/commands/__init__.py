"""CLI command modules. Each module defines `register(cli)`, which adds its commands
to the `cqia` group; cqia/cli.py loads every module here in name order."""
