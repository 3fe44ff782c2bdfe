"""Fixtures shared with the AWS integration tests: a moto server and boto3 clients on it."""

from tests.integrations.bedrock.conftest import aws, moto_url

__all__ = ["aws", "moto_url"]
