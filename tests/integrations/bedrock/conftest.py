"""Fixtures: the local Bedrock server, a moto server for the other AWS services, boto3 clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.bedrock_server import BedrockServer

# Dummy credentials: botocore signs every request with them, and no span may show them.
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"


def client_kwargs(endpoint: str, **config: Any) -> dict[str, Any]:
    from botocore.config import Config

    retries = config.pop("retries", {"mode": "standard", "total_max_attempts": 1})
    return {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "config": Config(retries=retries, **config)}


@pytest.fixture(scope="session")
def _bedrock_server() -> Iterator[BedrockServer]:
    server = BedrockServer().start()
    yield server
    server.stop()


@pytest.fixture
def bedrock(_bedrock_server: BedrockServer) -> Iterator[BedrockServer]:
    """The Bedrock server with an empty script; the test must use up everything it queues."""
    _bedrock_server.reset()
    yield _bedrock_server
    assert _bedrock_server.pending == 0, "scripted responses left unused"


@pytest.fixture
def runtime(bedrock: BedrockServer) -> Callable[..., Any]:
    """``runtime(**config)``: a bedrock-runtime client on the local server."""
    import boto3

    def make(service: str = "bedrock-runtime", **config: Any) -> Any:
        return boto3.client(service, **client_kwargs(bedrock.url, **config))

    return make


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server (S3, DynamoDB, Secrets Manager, SSM, STS, ...) on loopback."""
    import logging

    from moto.server import ThreadedMotoServer

    # The server logs every request it serves; the tests read spans, not logs.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str) -> Callable[..., Any]:
    """``aws("s3")``: a client of that service on the moto server."""
    import boto3

    def make(service: str, **config: Any) -> Any:
        return boto3.client(service, **client_kwargs(moto_url, **config))

    return make
