"""The tests use the Bedrock-compatible server that ships with the demo."""

from agentguard.demo.bedrock_server import *  # noqa: F403
from agentguard.demo.bedrock_server import __all__  # noqa: F401
