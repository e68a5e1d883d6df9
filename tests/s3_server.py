"""A real S3 endpoint on 127.0.0.1 for the end-to-end tests: moto's server in a thread.

`dvc` runs in subprocesses and reaches it over HTTP, with the endpoint and the
keys in the environment only (the way `.dvc/config` expects them), and with
every AWS config file pointed at a path that does not exist, so nothing from
the user's ~/.aws leaks into a test. The objects live in moto's in-process
backend, so they survive `stop()` / `start()`: that is the endpoint going
down and coming back.
"""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path


class S3Server:
    def __init__(self, bucket: str):
        self.bucket = bucket
        self.port = 0
        self._server = None

    def start(self) -> "S3Server":
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        """Take the endpoint down: stop serving and close the socket, so connections are refused."""
        if self._server is not None:
            self._server.stop()
            self._server._server.server_close()  # stop() leaves the socket listening (connections would hang)
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_bucket(self) -> None:
        # moto does not check signatures: a bare PUT creates the bucket, with no AWS client config involved
        with urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")) as resp:
            assert resp.status == 200, resp.status

    def env(self, tmp: Path) -> dict[str, str]:
        """What a consumer of the `s3` remote sets: endpoint and keys, isolated from ~/.aws."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "cqia-test",
            "AWS_SECRET_ACCESS_KEY": "cqia-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp / "no-aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws" / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def without_aws(env: dict[str, str]) -> dict[str, str]:
    """A copy of `env` with every AWS_* variable removed."""
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}
