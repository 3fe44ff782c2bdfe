"""The runtime inventory: what this process actually loaded, when, and in which tool call.

One :class:`Inventory` per process (:func:`inventory`), fed by the AI-BOM stage from the runtime
sensor's ``ModuleLoad`` / ``ModelLoad`` events and the integrations' ``ModelCall`` events, and
seeded with a snapshot of the modules already imported. Thread-safe (one lock, held only for
dictionary updates) and bounded: past each limit new entries are counted, not stored.
"""

from __future__ import annotations

import hashlib
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name

from agentguard._errors import internal_error
from agentguard._files import open_regular
from agentguard.aibom._environment import environment

__all__ = [
    "AI_FRAMEWORKS",
    "DIRECTORY",
    "PICKLE_FORMATS",
    "Artifact",
    "DistributionUse",
    "HubDownload",
    "Inventory",
    "ModelUse",
    "Seen",
    "inventory",
    "needs_digest",
]

MAX_DISTRIBUTIONS = 8192
MAX_MODULES_PER_DISTRIBUTION = 32
MAX_MODELS = 1024
MAX_ARTIFACTS = 1024
MAX_DOWNLOADS = 1024
MAX_ACTIVITY = 16
MAX_TOOLS = 16
# Artifacts larger than this are hashed only up to here (the digest then names the prefix).
MAX_HASH_BYTES = 8 << 30
_CHUNK = 1 << 20

# Distributions that make a process an AI agent, by normalised name, and the role each plays.
AI_FRAMEWORKS: dict[str, str] = {
    "langchain": "agent-framework", "langchain-core": "agent-framework",
    "langchain-community": "agent-framework", "langgraph": "agent-framework",
    "langchain-aws": "model-provider", "langchain-openai": "model-provider",
    "langchain-anthropic": "model-provider", "langchain-google-genai": "model-provider",
    "llama-index": "agent-framework", "llama-index-core": "agent-framework",
    "crewai": "agent-framework", "autogen-agentchat": "agent-framework", "pyautogen": "agent-framework",
    "semantic-kernel": "agent-framework", "haystack-ai": "agent-framework", "mcp": "agent-framework",
    "boto3": "model-provider", "botocore": "model-provider", "aiobotocore": "model-provider",
    "openai": "model-provider", "anthropic": "model-provider", "cohere": "model-provider",
    "mistralai": "model-provider", "google-genai": "model-provider", "litellm": "model-provider",
    "ollama": "model-provider", "groq": "model-provider",
    "transformers": "ml-runtime", "torch": "ml-runtime", "tensorflow": "ml-runtime",
    "jax": "ml-runtime", "onnxruntime": "ml-runtime", "onnx": "ml-runtime",
    "safetensors": "ml-runtime", "tokenizers": "ml-runtime", "sentence-transformers": "ml-runtime",
    "diffusers": "ml-runtime", "accelerate": "ml-runtime", "peft": "ml-runtime",
    "vllm": "ml-runtime", "llama-cpp-python": "ml-runtime", "gguf": "ml-runtime",
    "scikit-learn": "ml-runtime", "joblib": "ml-runtime", "xgboost": "ml-runtime",
    "huggingface-hub": "model-hub", "tiktoken": "ml-runtime",
}

# The format of a model known by its directory (its files are artifacts of their own).
DIRECTORY = "directory"
# Formats whose loader runs code named by the file (pickle and the formats built on it).
PICKLE_FORMATS = frozenset({"pickle", "joblib", "pytorch", "torch", "dill", "cloudpickle"})


@dataclass(slots=True)
class Seen:
    """When and where something was first seen, and how often since."""

    first_seen: float
    tool: str | None = None
    span_id: str | None = None
    trace_id: str | None = None
    conversation_id: str | None = None
    count: int = 1
    last_seen: float = 0.0

    @classmethod
    def of(cls, context: Any, timestamp: float) -> Seen:
        return cls(first_seen=timestamp, last_seen=timestamp,
                   tool=getattr(context, "tool", None), span_id=getattr(context, "span_id", None),
                   trace_id=getattr(context, "trace_id", None),
                   conversation_id=getattr(context, "conversation_id", None))

    def again(self, timestamp: float) -> None:
        self.count += 1
        self.last_seen = max(self.last_seen, timestamp)


@dataclass(slots=True)
class DistributionUse:
    """An installed distribution some loaded module belongs to."""

    name: str  # normalised
    version: str | None
    seen: Seen
    modules: list[str] = field(default_factory=list)
    preloaded: bool = False  # already imported when the inventory started
    tools: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ModelUse:
    """A model the agent called (provider and model id, as the integration named them)."""

    provider: str | None
    model: str
    seen: Seen
    tools: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Artifact:
    """A model file loaded from disk (or fetched from a hub)."""

    path: str
    format: str | None
    seen: Seen
    size: int | None = None
    sha256: str | None = None
    hashed_bytes: int | None = None  # set when only a prefix could be hashed
    source: str | None = None  # the loader: "open", "pickle.load", "torch.load", a hub call
    model_id: str | None = None
    revision: str | None = None
    # Findings of the runtime sensor about this load (a payload spawning a process, ...).
    activity: list[dict[str, Any]] = field(default_factory=list)
    # Whether hashing was tried (False with no digest: still pending when the BOM was built).
    hash_tried: bool = False


@dataclass(slots=True)
class HubDownload:
    """A model fetched from a hub (repo id, revision, file, where it landed)."""

    repo_id: str
    revision: str | None
    filename: str | None
    local_path: str | None
    library: str
    seen: Seen


MAX_QUEUED_HASHES = 256


class _Hasher:
    """Hashes artifacts the sensor could not (too large for the hot path) on one daemon thread.

    Only this thread hashes them: a caller that needs the digests waits for it (bounded), so a
    file is never read twice at once and a BOM built with a short timeout returns on time.
    """

    def __init__(self, owner: Inventory) -> None:
        self.owner = owner
        self.queue: queue.Queue[str] = queue.Queue(maxsize=MAX_QUEUED_HASHES)
        self.thread: threading.Thread | None = None
        self.dropped = 0
        self.lock = threading.Lock()
        # Paths queued or being hashed (a path is queued once however often it is submitted).
        self.pending: set[str] = set()

    def submit(self, path: str, timeout: float = 0.0) -> bool:
        """Queue ``path`` (waiting at most ``timeout`` seconds for room); whether it is queued."""
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="agentguard-aibom-hash",
                                               daemon=True)
                self.thread.start()
            if path in self.pending:
                return True
            self.pending.add(path)
        try:
            if timeout > 0:
                self.queue.put(path, timeout=timeout)
            else:
                self.queue.put_nowait(path)
            return True
        except queue.Full:
            with self.lock:
                self.pending.discard(path)
                if timeout <= 0:  # a load's digest given up (a waiting caller's retry is not)
                    self.dropped += 1
            return False

    def _run(self) -> None:
        try:
            from agentguard import sensors

            sensors.quiet_thread()  # its own file reads are not the agent's
        except Exception as exc:
            internal_error("aibom hash thread", exc)
        while True:
            path = self.queue.get()
            try:
                self.owner.hash_now(path)
            except Exception as exc:
                internal_error("aibom hash", exc)
            finally:
                with self.lock:
                    self.pending.discard(path)
                self.queue.task_done()

    def wait(self, timeout: float) -> bool:
        """Wait until the queue is empty (or the timeout runs out)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


def sha256_file(path: str, limit: int = MAX_HASH_BYTES) -> tuple[int | None, str | None, int]:
    """(size, sha256 of at most ``limit`` bytes, bytes hashed) of a regular file."""
    try:
        handle, size = open_regular(path)
    except (OSError, ValueError):  # no regular file (a pipe swapped in waits for no writer)
        return None, None, 0
    digest = hashlib.sha256()
    read = 0
    with handle:
        try:
            while read < limit:
                chunk = handle.read(min(_CHUNK, limit - read))
                if not chunk:
                    break
                digest.update(chunk)
                read += len(chunk)
        except OSError:
            return size, None, 0
    return size, digest.hexdigest(), read


class Inventory:
    """What this process loaded: distributions, models called, model artifacts, hub downloads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.distributions: dict[str, DistributionUse] = {}
        self.local_modules: dict[str, Seen] = {}
        self.models: dict[tuple[str | None, str], ModelUse] = {}
        self.artifacts: dict[str, Artifact] = {}
        self.downloads: dict[tuple[str, str | None, str | None], HubDownload] = {}
        self.dropped: dict[str, int] = {"distributions": 0, "models": 0, "artifacts": 0,
                                        "downloads": 0, "local_modules": 0}
        self.snapshot_taken = False
        self.hasher = _Hasher(self)
        # Hub revisions of artifacts about to be recorded (path or "hub:<repo>" -> revision).
        self.revisions: dict[str, str] = {}
        # Called (on the hash thread) with each artifact whose digest was computed late.
        self.on_hashed: Callable[[Artifact], None] | None = None

    # -- recording ---------------------------------------------------------------------------
    def snapshot(self) -> int:
        """Record the top-level modules already imported; returns how many distributions were new."""
        env = environment()
        now = time.time()
        tops = {name.partition(".")[0] for name in list(sys.modules)}
        # Outside the lock: a module no known distribution ships may make the environment re-read
        # the directory it came from (installed at runtime, imported while no sensor watched).
        owned = [(top, owners) for top in sorted(tops) if (owners := env.discover(top))]
        added = 0
        with self.lock:
            for top, owners in owned:
                # Recorded as local when it loaded; an installed distribution ships it after all.
                local = self.local_modules.pop(top, None)
                for owner in owners:
                    use = self.distributions.get(owner)
                    if use is None:
                        if len(self.distributions) >= MAX_DISTRIBUTIONS:
                            self.dropped["distributions"] += 1
                            continue
                        dist = env.distributions.get(owner)
                        use = DistributionUse(owner, dist.version if dist else None,
                                              local or Seen(first_seen=now, last_seen=now),
                                              preloaded=local is None)
                        self.distributions[owner] = use
                        added += 1
                    if top not in use.modules and len(use.modules) < MAX_MODULES_PER_DISTRIBUTION:
                        use.modules.append(top)
            self.snapshot_taken = True
        return added

    def record_module(self, event: Any) -> list[str]:
        """Record a ``ModuleLoad``; returns the normalised distributions it was new for."""
        module = event.module
        names: tuple[str, ...]
        if event.distribution:
            names = (canonicalize_name(event.distribution),)
        else:
            if "/" in module or module.partition(".")[0] in environment().stdlib:
                return []  # a native library by path, or the standard library
            # A miss re-reads the module's sys.path entry when it changed (a tool ran pip).
            names = environment().discover(module)
        timestamp = event.timestamp
        context = event.context
        new: list[str] = []
        with self.lock:
            if not names:
                seen = self.local_modules.get(module)
                if seen is not None:
                    seen.again(timestamp)
                elif len(self.local_modules) < MAX_DISTRIBUTIONS:
                    self.local_modules[module] = Seen.of(context, timestamp)
                else:
                    self.dropped["local_modules"] += 1
                return []
            for name in names:
                use = self.distributions.get(name)
                if use is None:
                    if len(self.distributions) >= MAX_DISTRIBUTIONS:
                        self.dropped["distributions"] += 1
                        continue
                    version = event.version
                    if version is None:
                        dist = environment().distributions.get(name)
                        version = dist.version if dist is not None else None
                    use = DistributionUse(name, version, Seen.of(context, timestamp))
                    self.distributions[name] = use
                    new.append(name)
                else:
                    use.seen.again(timestamp)
                if module not in use.modules and len(use.modules) < MAX_MODULES_PER_DISTRIBUTION:
                    use.modules.append(module)
                tool = getattr(context, "tool", None)
                if tool and tool not in use.tools and len(use.tools) < MAX_TOOLS:
                    use.tools.append(tool)
        return new

    def record_model_call(self, event: Any) -> bool:
        """Record a ``ModelCall`` request; returns whether this model is new."""
        model = event.model
        if not model:
            return False
        key = (event.provider, str(model))
        tool = getattr(event.context, "tool", None)
        with self.lock:
            use = self.models.get(key)
            if use is not None:
                use.seen.again(event.timestamp)
                if tool and tool not in use.tools and len(use.tools) < MAX_TOOLS:
                    use.tools.append(tool)
                return False
            if len(self.models) >= MAX_MODELS:
                self.dropped["models"] += 1
                return False
            self.models[key] = ModelUse(event.provider, str(model),
                                        Seen.of(event.context, event.timestamp),
                                        [tool] if tool else [])
            return True

    def record_artifact(self, event: Any) -> tuple[Artifact | None, bool]:
        """Record a ``ModelLoad``; returns the artifact and whether it is new.

        A file the sensor did not hash (over its hot-path limit) is queued for the hash thread.
        """
        path = event.path or (f"hub:{event.model_id}" if event.model_id else None)
        if path is None:
            return None, False
        queue_hash = False
        with self.lock:
            artifact = self.artifacts.get(path)
            if artifact is not None:
                artifact.seen.again(event.timestamp)
                if event.model_id and artifact.model_id is None:
                    artifact.model_id = event.model_id
                if event.sha256 and artifact.sha256 is None:
                    artifact.sha256 = event.sha256
                elif event.sha256 and event.sha256 != artifact.sha256:
                    # The file changed between loads: keep the latest digest, remember the change.
                    self._add_activity(artifact, {"kind": "digest-changed",
                                                  "previous": artifact.sha256,
                                                  "sha256": event.sha256})
                    artifact.sha256 = event.sha256
                return artifact, False
            if len(self.artifacts) >= MAX_ARTIFACTS:
                self.dropped["artifacts"] += 1
                return None, False
            artifact = Artifact(path=path, format=event.format,
                                seen=Seen.of(event.context, event.timestamp), size=event.size,
                                sha256=event.sha256, source=event.source,
                                model_id=event.model_id, revision=self.revisions.pop(path, None))
            self.artifacts[path] = artifact
            queue_hash = artifact.sha256 is None and event.path is not None and \
                event.format != DIRECTORY
        if queue_hash:
            self.hasher.submit(path)
        return artifact, True

    def record_download(self, repo_id: str, revision: str | None, filename: str | None,
                        local_path: str | None, library: str, context: Any) -> bool:
        key = (repo_id, revision, filename)
        now = time.time()
        with self.lock:
            existing = self.downloads.get(key)
            if existing is not None:
                existing.seen.again(now)
                return False
            if len(self.downloads) >= MAX_DOWNLOADS:
                self.dropped["downloads"] += 1
                return False
            self.downloads[key] = HubDownload(repo_id, revision, filename, local_path, library,
                                              Seen.of(context, now))
            return True

    def expect_revision(self, key: str, revision: str | None) -> None:
        """Remember the hub revision of an artifact about to be reported under ``key``."""
        if not revision:
            return
        with self.lock:
            artifact = self.artifacts.get(key)
            if artifact is not None:
                artifact.revision = revision
            elif len(self.revisions) < MAX_DOWNLOADS:
                self.revisions[key] = revision

    def link_activity(self, path: str | None, entry: dict[str, Any]) -> None:
        """Attach a sensor finding about a load in progress to the artifact it concerns."""
        if not path:
            return
        with self.lock:
            artifact = self.artifacts.get(path)
            if artifact is not None:
                self._add_activity(artifact, entry)

    @staticmethod
    def _add_activity(artifact: Artifact, entry: dict[str, Any]) -> None:
        if len(artifact.activity) < MAX_ACTIVITY:
            artifact.activity.append(entry)

    # -- hashing -----------------------------------------------------------------------------
    def hash_now(self, path: str) -> str | None:
        """Compute (once) the digest of an artifact the sensor did not hash."""
        with self.lock:
            artifact = self.artifacts.get(path)
            if artifact is None or artifact.sha256 is not None:
                return artifact.sha256 if artifact is not None else None
        size, sha, read = sha256_file(path)
        with self.lock:
            artifact.hash_tried = True
            artifact.size = artifact.size if artifact.size is not None else size
            hashed = sha is not None and artifact.sha256 is None
            if hashed:
                artifact.sha256 = sha
                if size is not None and read < size:
                    artifact.hashed_bytes = read
        callback = self.on_hashed
        if hashed and callback is not None:
            try:
                callback(artifact)
            except Exception as exc:
                internal_error("aibom hashed callback", exc)
        return artifact.sha256

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait (at most ``timeout`` seconds) for the digests still to be taken, before a BOM is
        built; whether every one was. Artifacts the hash thread has not reached by then stay
        without a digest (``pending_digests()``); the caller's thread never hashes."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self.lock:
            # Queued when recorded, or not (the queue was full): either way the hash thread's.
            waiting = [a.path for a in self.artifacts.values() if needs_digest(a)]
        for path in waiting:
            if not self.hasher.submit(path, max(0.0, deadline - time.monotonic())):
                break
        return self.hasher.wait(max(0.0, deadline - time.monotonic())) and \
            not self.pending_digests()

    def pending_digests(self) -> int:
        """How many artifacts still wait for their digest."""
        with self.lock:
            return sum(1 for artifact in self.artifacts.values() if needs_digest(artifact))

    # -- reading -----------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {"distributions": len(self.distributions), "models": len(self.models),
                    "artifacts": len(self.artifacts), "downloads": len(self.downloads),
                    "local_modules": len(self.local_modules), "dropped": dict(self.dropped),
                    "hash_dropped": self.hasher.dropped}

    def loaded_distributions(self) -> set[str]:
        with self.lock:
            return set(self.distributions)


def needs_digest(artifact: Artifact) -> bool:
    """Whether an artifact is a file whose digest was neither given nor tried yet."""
    return artifact.sha256 is None and not artifact.hash_tried and \
        not artifact.path.startswith("hub:") and artifact.format != DIRECTORY


_lock = threading.Lock()
_inventory: Inventory | None = None


def inventory() -> Inventory:
    """The process's inventory (created, with its snapshot of imported modules, on first use)."""
    global _inventory
    current = _inventory
    if current is not None:
        return current
    with _lock:
        if _inventory is None:
            created = Inventory()
            created.snapshot()
            _inventory = created
        return _inventory


def reset() -> Inventory:
    """Start a fresh inventory (tests, or a process that forked and starts over)."""
    global _inventory
    with _lock:
        _inventory = Inventory()
        _inventory.snapshot()
        return _inventory
