"""`cqia gx-server status|stop`: the Great Expectations server the gates share (cqia/gates/gx_server.py)."""

from __future__ import annotations

import click
import orjson


def register(cli: click.Group) -> None:
    @cli.group("gx-server")
    def gx_server() -> None:
        """The Great Expectations server: one process that imports GX once and forks a child per gate run.

        The first gate run of a `dvc repro` starts it; it exits after CQIA_GX_SERVER_IDLE seconds
        (default 120) without a gate run. Its socket, log and pid file are in
        $CQIA_GX_SERVER_DIR, or <tmp>/cqia-gx-<uid>/. CQIA_GX_SERVER=0 runs each gate in a
        helper process of its own instead.

        \b
        Example:
            cqia gx-server status
            cqia gx-server stop
        """

    @gx_server.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print the servers as JSON.")
    def status_cmd(as_json: bool) -> None:
        """The servers in the server directory: pid, whether it runs, gate runs now, socket and log.

        A server of older code stays listed until it exits (its key differs).

        \b
        Example:
            cqia gx-server status
        """
        from cqia.gates import gx_server as server

        found = server.servers()
        if as_json:
            click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
            return
        if not found:
            click.echo(f"no Great Expectations server in {server.server_dir()}")
        mine = server.server_key()
        for entry in found:
            state = f"running, {entry['gate_runs']} gate run(s) now" if entry["running"] else "not running"
            code = "this code" if entry["key"] == mine else "other code"
            click.echo(f"{entry['key']} ({code}): pid {entry['pid']}, {state}\n"
                       f"  socket {entry['socket']}\n  log    {entry['log']}")

    @gx_server.command("stop")
    @click.option("--json", "as_json", is_flag=True, help="Print the stopped servers' pids as JSON.")
    def stop_cmd(as_json: bool) -> None:
        """Stop the servers: each finishes its gate runs, removes its socket and exits.

        The next gate run starts a new one.

        \b
        Example:
            cqia gx-server stop
        """
        from cqia.gates import gx_server as server

        stopped = server.stop()
        if as_json:
            click.echo(orjson.dumps({"stopped": stopped}).decode())
        else:
            click.echo(f"stopped {', '.join(f'pid {p}' for p in stopped)}" if stopped
                       else f"no Great Expectations server running in {server.server_dir()}")
