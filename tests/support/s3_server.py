"""An S3-compatible server on 127.0.0.1 (moto's), for tests of shared storage over real HTTP.

    with S3Server() as s3:
        storage = FsspecStorage(s3.url("bucket/prefix"), s3.options)

Every process that opens `s3.options` (a Dask worker too) talks to the same server over a real
socket through s3fs, as it would to AWS: the public internet is what it stands in for.
"""

from __future__ import annotations

import uuid


class S3Server:
    """moto's threaded server on a free loopback port, with one fresh bucket."""

    def __init__(self) -> None:
        self.bucket = f"treeoflife-{uuid.uuid4().hex[:12]}"
        self._server = None
        self.endpoint = ""

    def __enter__(self) -> S3Server:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ).create_bucket(Bucket=self.bucket)
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def options(self) -> dict:
        """fsspec options that reach this server (what `storage.options` would hold)."""
        return {
            "key": "test",
            "secret": "test",
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def url(self, prefix: str = "") -> str:
        """s3:// URL of `prefix` in this server's bucket."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")
