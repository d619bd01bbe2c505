"""A real S3 server for tests: moto's standalone server on a free loopback port, one bucket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.support import free_port

__all__ = ["BUCKET", "PREFIX", "s3_endpoint", "client", "s3_settings", "bucket_keys"]

BUCKET = "openbailian-test"
PREFIX = "deploy-a"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server (its own HTTP server, spoken to over the network), with the bucket."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def s3_settings(endpoint: str) -> dict[str, Any]:
    return {
        "s3_bucket": BUCKET, "s3_prefix": PREFIX, "s3_endpoint_url": endpoint, "s3_region": "us-east-1",
        "s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_addressing_style": "path",
    }


def bucket_keys(endpoint: str) -> set[str]:
    keys: set[str] = set()
    for page in client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys
