"""A real S3 API on loopback: moto's standalone server in a subprocess, with IAM authentication on.

The server lets its first three requests through unauthenticated (to create an IAM user, its access key
and an allow-all policy); every later request must be signed with that key, so wrong credentials fail
as they would on AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUCKET = "lazymerge-test"
REGION = "us-east-1"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key_id: str
    secret: str

    def store(self, prefix: str = "", key_id: str | None = None, secret: str | None = None):
        """An obstore S3Store on the bucket, credentials from this object (or the ones given)."""
        from obstore.store import S3Store

        return S3Store(
            BUCKET,
            prefix=prefix or None,
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=key_id or self.key_id,
            secret_access_key=secret or self.secret,
            client_options={"allow_http": True},
        )

    def env(self) -> dict[str, str]:
        """The same credentials as AWS_* environment variables (what ``s3://`` URLs read)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start() -> tuple[subprocess.Popen, S3Server]:
    import boto3

    port = _free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("moto server exited at start") from None
            time.sleep(0.1)
    anon = {"endpoint_url": endpoint, "region_name": REGION}
    iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **anon)
    iam.create_user(UserName="lazymerge")
    key = iam.create_access_key(UserName="lazymerge")["AccessKey"]
    iam.put_user_policy(UserName="lazymerge", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
    server = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    s3 = boto3.client("s3", aws_access_key_id=server.key_id, aws_secret_access_key=server.secret, **anon)
    s3.create_bucket(Bucket=BUCKET)
    return proc, server


@contextlib.contextmanager
def serving() -> Iterator[S3Server]:
    """A moto server for the duration of the block (a module fixture's body)."""
    proc, server = start()
    try:
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


def upload(server: S3Server, local: Path, prefix: str) -> None:
    """Every file of a local Zarr store, under ``prefix`` in the bucket."""
    import obstore

    store = server.store()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            obstore.put(store, f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())
