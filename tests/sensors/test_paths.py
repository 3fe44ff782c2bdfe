"""Which paths the sensor cares about: credentials, system secrets, persistence spots, models."""

from __future__ import annotations

import pytest

from agentguard.sensors._models import unsafe_global
from agentguard.sensors._paths import classify_path, model_format, sensitive_unix_socket


@pytest.mark.parametrize(("path", "write", "expected"), [
    ("/home/ada/.aws/credentials", False, "credential"),
    ("/root/.ssh/id_rsa", False, "credential"),
    ("/srv/keys/id_ed25519", False, "credential"),
    ("/home/ada/.kube/config", False, "credential"),
    ("/home/ada/.config/gcloud/application_default_credentials.json", False, "credential"),
    ("/home/ada/.docker/config.json", False, "credential"),
    ("/home/ada/.netrc", False, "credential"),
    ("/app/.env", False, "credential"),
    ("/app/.env.production", False, "credential"),
    ("/etc/ssl/private/server.key", False, "credential"),
    ("/etc/tls/site.PEM", False, "credential"),
    ("/var/run/secrets/kubernetes.io/serviceaccount/token", False, "system"),
    ("/run/secrets/db_password", False, "system"),
    ("/proc/self/environ", False, "system"),
    ("/proc/1234/environ", False, "system"),
    ("/etc/shadow", False, "system"),
    ("/etc/sudoers.d/agent", True, "system"),
    ("/home/ada/.bashrc", True, "persistence"),
    ("/home/ada/.ssh/authorized_keys", True, "persistence"),
    ("/etc/cron.d/job", True, "persistence"),
    ("/home/ada/.config/systemd/user/x.service", True, "persistence"),
    ("/venv/lib/python3.11/site-packages/evil.pth", True, "persistence"),
    ("/venv/lib/python3.11/site-packages/sitecustomize.py", True, "persistence"),
    ("/venv/lib/python3.11/site-packages/requests/api.py", True, "persistence"),
    ("/models/resnet.pth", False, "model"),
    ("/models/model.safetensors", False, "model"),
    ("/models/Model.PKL", False, "model"),
    ("/data/report.csv", False, None),
    ("/data/report.csv", True, None),
    ("/venv/lib/python3.11/site-packages/requests/api.py", False, None),
    ("/home/ada/.cache/pip/http/abc", False, None),
    ("/home/ada/.venv/lib/python3.11/site-packages/x/__pycache__/y.cpython-311.pyc", False, None),
    ("/etc/hostname", False, None),
    ("/etc/cron.d/job", False, None),
    ("/proc/self/status", False, None),
    ("/home/ada/id_rsa.pub", False, None),
    ("/app/environment.py", False, None),
])
def test_paths_are_classified(path: str, write: bool, expected: str | None) -> None:
    """Each path gets the category a reader of the trace would expect (None: ordinary)."""
    assert classify_path(path, write) == expected


def test_model_formats_come_from_the_extension() -> None:
    """A model artifact's format is named by its extension; other files have none."""
    assert model_format("/m/classifier.joblib") == "joblib"
    assert model_format("/m/llama.Q4.gguf") == "gguf"
    assert model_format("/m/pytorch_model.bin") == "pytorch"
    assert model_format("/m.d/readme") is None
    assert model_format("/m/notes.txt") is None


def test_only_container_runtime_sockets_are_sensitive() -> None:
    """Docker's, containerd's and similar API sockets are sensitive; other Unix sockets not."""
    assert sensitive_unix_socket("/var/run/docker.sock")
    assert sensitive_unix_socket("/run/containerd/containerd.sock")
    assert not sensitive_unix_socket("/run/dbus/system_bus_socket")
    assert not sensitive_unix_socket("/tmp/app.sock")


@pytest.mark.parametrize(("module", "name", "expected"), [
    ("posix", "system", "exec"),
    ("os", "popen", "exec"),
    ("subprocess", "Popen", "exec"),
    ("builtins", "eval", "exec"),
    ("builtins", "getattr", "reflection"),
    ("operator", "methodcaller", "reflection"),
    ("socket", "create_connection", "network"),
    ("urllib.request", "urlopen", "network"),
    ("builtins", "set", None),
    ("collections", "OrderedDict", None),
    ("numpy.core.multiarray", "_reconstruct", None),
    ("torch._utils", "_rebuild_tensor_v2", None),
    ("posixpath", "join", None),
])
def test_unsafe_pickle_globals(module: str, name: str, expected: str | None) -> None:
    """Globals that run commands, open connections or reach arbitrary objects are unsafe in a
    pickle; the classes model files are made of are not."""
    assert unsafe_global(module, name) == expected
