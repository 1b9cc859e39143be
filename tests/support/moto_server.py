"""moto in server mode on loopback: boto3 talks HTTP to it exactly as to AWS.

Use it as a context manager (or from a session fixture):

    with moto_server() as aws:
        s3 = aws.client("s3")
        ...
        aws.reset()  # between tests

Not `mock_aws` decorators: the code under test makes real HTTP requests, so what is
tested is what runs against S3 (signing, pagination, ETags, LastModified).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    endpoint: str  # http://127.0.0.1:<port>

    def client(self, service: str, **kwargs: Any) -> Any:  # noqa: ANN401 - a boto3 client
        """A boto3 client for `service` pointed at this server, with dummy keys."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            **kwargs,
        )

    def reset(self) -> None:
        """Forget every bucket, queue and object (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start moto on 127.0.0.1 on a free port; stop it on exit."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO: keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoServer(endpoint=f"http://{host}:{port}")
    finally:
        server.stop()


@contextmanager
def moto_server_in_env() -> Iterator[MotoServer]:
    """moto_server(), with the environment the pipeline's own boto3 clients read (the
    endpoint, dummy keys, a region) set while it runs."""
    import pytest

    with moto_server() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("INFERLEDGER_S3_ENDPOINT_URL", server.endpoint)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        yield server
