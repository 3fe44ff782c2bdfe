"""Which file paths and sockets matter: credentials, system secrets, persistence spots, models.

Reads of ordinary files are not events, so the classification of a read must cost next to
nothing: an exact basename lookup, a suffix test, and a regular expression that only runs on
paths with a dot-directory or under a few system roots. Everything here is pure and bounded by
the length of the path.
"""

from __future__ import annotations

import re

__all__ = [
    "MODEL_FORMATS",
    "classify_path",
    "model_format",
    "sensitive_unix_socket",
]

CREDENTIAL = "credential"
SYSTEM = "system"
PERSISTENCE = "persistence"
MODEL = "model"

# Files that are credentials wherever they live.
_CREDENTIAL_BASENAMES = frozenset({
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk",
    ".netrc", "_netrc", ".pgpass", ".git-credentials", ".npmrc", ".pypirc", ".vault-token",
    ".boto", ".s3cfg", ".my.cnf", ".dockercfg", "credentials.tfrc.json",
    "application_default_credentials.json",
})
# Shell start-up files and Python start-up hooks: writing one runs code later (persistence).
_PERSISTENCE_BASENAMES = frozenset({
    ".bashrc", ".bash_profile", ".bash_login", ".profile", ".zshrc", ".zprofile", ".zshenv",
    ".bash_logout", "sitecustomize.py", "usercustomize.py", "authorized_keys",
    "authorized_keys2", "rc.local", "ld.so.preload",
})
_CREDENTIAL_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".ppk", ".kdbx",
                        ".ovpn")
# Directories of secrets under a home directory (matched after "/.").
_DOT_DIRS = re.compile(
    r"/\.(?:ssh|aws|azure|kube|docker|gnupg|password-store|config/gcloud|config/gh|"
    r"terraform\.d|oci|config/doctl|minikube)/"
)
# Absolute system locations (matched at the start of an absolute path).
_SYSTEM_PATHS = re.compile(
    r"/(?:etc/(?:(?:g?shadow|sudoers|master\.passwd)(?:-|\Z)|sudoers\.d/|ssl/private/|"
    r"kubernetes/(?:admin|kubelet|controller-manager|scheduler)\.conf\Z|kubernetes/pki/)|"
    r"(?:var/)?run/secrets/|proc/[^/]+/(?:environ|mem|maps)\Z|proc/kcore\Z|dev/(?:k?mem|port)\Z|"
    r"var/lib/kubelet/pki/)"
)
_PERSISTENCE_PATHS = re.compile(
    r"/(?:etc/(?:cron[^/]*/|crontab\Z|systemd/|init\.d/|profile\.d/|ld\.so\.preload\Z|"
    r"rc\.local\Z|sudoers)|var/spool/cron/)|/\.config/(?:systemd|autostart)/"
)
# The second to fifth characters of the absolute paths _SYSTEM_PATHS and _PERSISTENCE_PATHS can
# match ("/etc/...", "/proc/...", "/run/secrets", "/var/...", "/dev/...").
_SYSTEM_ROOTS = frozenset({"etc/", "proc", "run/", "var/", "dev/"})

# Model artifact extensions and the format each one names.
MODEL_FORMATS: dict[str, str] = {
    ".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib", ".pt": "pytorch",
    ".pth": "pytorch", ".ckpt": "pytorch", ".bin": "pytorch", ".mar": "pytorch",
    ".safetensors": "safetensors", ".onnx": "onnx", ".gguf": "gguf", ".ggml": "ggml",
    ".h5": "keras", ".hdf5": "keras", ".keras": "keras", ".tflite": "tflite", ".pb": "tensorflow",
    ".npy": "numpy", ".npz": "numpy", ".mlmodel": "coreml", ".nemo": "nemo",
    ".llamafile": "llamafile",
}
_CODE = "code"
# Extension -> what a file with it is. One dictionary lookup classifies most paths (the import
# system's reads of source, bytecode and extension modules above all).
_EXTENSIONS: dict[str, str] = {
    **{suffix: MODEL for suffix in MODEL_FORMATS},
    **{suffix: CREDENTIAL for suffix in _CREDENTIAL_SUFFIXES},
    ".pyc": _CODE, ".py": _CODE, ".so": _CODE, ".pyi": _CODE,
}
_SITE_DIRS = ("/site-packages/", "/dist-packages/")

_CONTAINER_SOCKETS = frozenset({
    "docker.sock", "containerd.sock", "crio.sock", "podman.sock", "dockershim.sock",
    "cri-dockerd.sock", "buildkitd.sock", "kubelet.sock",
})


def model_format(path: str) -> str | None:
    """The model format a path's extension names, or ``None`` when it is not a model artifact."""
    dot = path.rfind(".")
    if dot < 0 or path.rfind("/") > dot:
        return None
    return MODEL_FORMATS.get(path[dot:].lower())


def _in_site_packages(path: str) -> bool:
    return _SITE_DIRS[0] in path or _SITE_DIRS[1] in path


def classify_path(path: str, write: bool) -> str | None:
    """The category of an absolute path (``credential``, ``system``, ``persistence``, ``model``).

    ``None`` means an ordinary file: its reads are not reported (writes always are).
    """
    base = path[path.rfind("/") + 1:]
    if base in _CREDENTIAL_BASENAMES:
        return CREDENTIAL
    if base in _PERSISTENCE_BASENAMES:
        return PERSISTENCE
    dot = base.rfind(".")
    if dot > 0:
        suffix = base[dot:]
        kind = _EXTENSIONS.get(suffix) or _EXTENSIONS.get(suffix.lower())
        if kind is _CODE:
            # A module written into site-packages runs whenever something imports it.
            return PERSISTENCE if write and _in_site_packages(path) else None
        if kind is MODEL:
            if write and suffix == ".pth" and _in_site_packages(path):
                return PERSISTENCE  # a .pth file there runs its import lines at every start
            return MODEL
        if kind is CREDENTIAL:
            return CREDENTIAL
    if base.startswith(".env") and (len(base) == 4 or base[4] == "."):
        return CREDENTIAL
    if "/." in path:
        if _DOT_DIRS.search(path) is not None:
            return CREDENTIAL
        if write and _PERSISTENCE_PATHS.search(path) is not None:
            return PERSISTENCE
    if path[1:5] in _SYSTEM_ROOTS:
        if _SYSTEM_PATHS.match(path) is not None:
            return SYSTEM
        if write and _PERSISTENCE_PATHS.match(path) is not None:
            return PERSISTENCE
    return None


def sensitive_unix_socket(path: str) -> bool:
    """Whether a Unix socket path is a container runtime's API (connecting to it is an escape)."""
    return path[path.rfind("/") + 1:] in _CONTAINER_SOCKETS
