"""The Kubernetes manifests in deploy/kubernetes/ are valid against the Kubernetes API schemas
(bundled with kubernetes-validate, offline) and give the collector what its sensor needs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

MANIFESTS = sorted((Path(__file__).parents[2] / "deploy" / "kubernetes").glob("*.yaml"))
# The oldest Kubernetes release the manifests are meant for (internalTrafficPolicy is GA from
# 1.26), and the newest whose schemas are bundled.
VERSIONS = ("1.26.0", kubernetes_validate.latest_version())


def _documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in MANIFESTS:
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def _by_kind(kind: str) -> dict[str, Any]:
    (document,) = [d for d in _documents() if d["kind"] == kind]
    return document


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly_against_the_kubernetes_schema(version: str) -> None:
    """Each resource is valid for the Kubernetes version, with no unknown field anywhere."""
    documents = _documents()
    assert {d["kind"] for d in documents} >= {"Namespace", "DaemonSet", "Service"}
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_a_broken_manifest_is_caught() -> None:
    """A misspelt field or a wrongly typed value fails validation (the check can fail)."""
    daemonset = _by_kind("DaemonSet")
    misspelt = copy.deepcopy(daemonset)
    misspelt["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, VERSIONS[-1], strict=True)
    wrong_type = copy.deepcopy(daemonset)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, VERSIONS[-1], strict=True)


def test_daemonset_gives_the_sensor_host_pids_capabilities_and_kernel_filesystems() -> None:
    """The DaemonSet runs in the host pid namespace with the eBPF capabilities, tracefs and
    debugfs mounted, is probed on /healthz, and its Service keeps agents on their node."""
    pod = _by_kind("DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    (container,) = pod["containers"]
    added = set(container["securityContext"]["capabilities"]["add"])
    assert {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"} <= added
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/cgroup"} <= mounts
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--otlp-http=0.0.0.0:4318" in container["args"]
    service = _by_kind("Service")["spec"]
    assert service["internalTrafficPolicy"] == "Local"
    assert {p["port"] for p in service["ports"]} == {4317, 4318}
