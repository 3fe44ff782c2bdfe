"""The audit hook: a dictionary lookup for events nobody asked for, then one handler per event.

CPython calls the hook for every audit event in the process, on the thread that raised it and
before the operation happens, so a handler sees the tool call's context (contextvars) and can
refuse the operation by raising. The hook is installed once and stays (audit hooks cannot be
removed); it returns at once when agentguard is not instrumented, when the sensor is off, on
agentguard's own threads and while it is already running on this thread (our own opens, imports
and sockets, and whatever policy callbacks do). It never raises anything but the deliberate
:class:`~agentguard.sensors._emit.OperationBlocked`.

When the optional C extension ``_fasthook`` is built, the hook is entered from C: events without
a handler, the commonest events a handler would ignore at once, and repeats found in the thread's
repeat table never reach Python (a repeat is counted in C; :func:`_fold_repeats` writes the
counts on their spans just before agentguard ends a span, see ``_fasthook.c``); the rest call
:data:`HOOK` exactly as CPython would. ``AGENTGUARD_SENSOR_HOOK=
python`` (read when the hook is added) uses the pure-Python hook even when the extension exists.
"""

from __future__ import annotations

import _socket
import contextvars
import logging
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentguard import _guard, semconv
from agentguard import _state as _agentguard_state
from agentguard._errors import internal_error
from agentguard.events import (
    DnsLookup,
    EventContext,
    FileOpen,
    ModelLoad,
    ModuleLoad,
    NetConnect,
    ProcessExec,
)
from agentguard.findings import Decision
from agentguard.sensors import _state, _tamper
from agentguard.sensors._emit import (
    RULE_LOAD_SPAWN,
    RULE_UNSAFE_PICKLE,
    Observation,
    OperationBlocked,
    context_reader,
    current_operation,
    emit_native,
    native_finding,
    needless,
    report,
    rule_enabled,
)
from agentguard.sensors._fspaths import UNKNOWN, absolute, normalised
from agentguard.sensors._models import (
    EXEC,
    FILE,
    NETWORK,
    REFLECTION,
    STATE,
    UNRESOLVED,
    current_load,
    digest,
    unpickled_by_transport,
    unsafe_global,
)
from agentguard.sensors._modules import MAX_SEEN, first_load
from agentguard.sensors._paths import MODEL, classify_path, model_format, sensitive_unix_socket
from agentguard.sensors._tamper import CODE_ATTRIBUTES, check_patches, on_setattr, report_tamper

if TYPE_CHECKING:
    from agentguard._guard import Guard

__all__ = ["CONTROL_EVENT", "HANDLERS", "HOOK_ENV", "activate", "hook_kind", "install", "installed",
           "report_import", "report_model_load", "run_handler"]

Handler = Callable[["Guard", tuple[Any, ...]], None]

logger = logging.getLogger("agentguard")

# argv entries kept on an event (the rest are dropped; the executable is always argv[0]).
MAX_ARGV = 1024
MAX_DATAGRAM_CACHE = 1024
# Paths already read and found ordinary (classification is a pure function of the path).
MAX_ORDINARY_READS = 4096
# Reads of code by the import system: the bulk of all opens, never an event.
_CODE_SUFFIXES = (".pyc", ".py")

_UNJUDGED: Any = object()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_FAMILY = _socket.socket.family.__get__
_TYPE = _socket.socket.type.__get__
_AF_UNIX = getattr(socket, "AF_UNIX", -1)
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
# Writes nobody needs to hear about: the null device, terminals, bytecode caches.
_QUIET_WRITES = ("/dev/null", "/dev/tty", "/dev/zero", "/dev/stdout", "/dev/stderr")
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                             "os.spawn", "os.fork", "os.forkpty", "pty.spawn", "os.startfile"})
# Events the fail-closed rule applies to (an internal error on these blocks in enforce mode).
_JUDGED = _PROCESS_EVENTS | {"socket.connect", "socket.sendto", "socket.sendmsg", "open",
                             "socket.getaddrinfo", "socket.gethostbyname"}


# -- small helpers -------------------------------------------------------------------------------

def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return os.fsdecode(bytes(value))
    try:
        return os.fsdecode(os.fspath(value))
    except TypeError:
        return str(value)


def _argv(argv: Any) -> list[str]:
    if argv is None:
        return []
    if isinstance(argv, (str, bytes, os.PathLike)):
        return [_text(argv)]
    out = []
    for index, item in enumerate(argv):
        if index >= MAX_ARGV:
            break
        out.append(_text(item))
    return out


def _env_path(env: Any) -> str | None:
    """``PATH`` of a child's environment (str or bytes keys; ``os.environ`` refuses bytes)."""
    if not isinstance(env, Mapping):
        return os.environ.get("PATH")
    for key in ("PATH", b"PATH"):
        try:
            value = env.get(key)
        except (TypeError, ValueError):
            continue
        if value is not None:
            return _text(value)
    return None


def _resolve_executable(executable: str, env: Any, cwd: str | None) -> str:
    if not executable:
        return executable
    if "/" in executable:
        if not os.path.isabs(executable):
            return os.path.normpath(os.path.join(cwd or os.getcwd(), executable))
        return executable
    found = shutil.which(executable, path=_env_path(env))
    return found or executable


_inet_pton = socket.inet_pton


def _is_ip(host: str) -> bool:
    """Whether ``host`` is a literal IPv4 or IPv6 address (nothing to resolve)."""
    try:
        _inet_pton(socket.AF_INET, host)
        return True
    except (OSError, ValueError):
        pass
    if ":" not in host:
        return False
    try:
        _inet_pton(socket.AF_INET6, host.partition("%")[0])
        return True
    except (OSError, ValueError):
        return False


def _seconds(time_ns: int) -> float:
    return time_ns / 1e9


# -- processes -----------------------------------------------------------------------------------

def _process(guard: Guard, operation: str, executable: Any, argv: Any, cwd: Any, env: Any,
             audit_event: str, *, pid: int | None = None, park_kind: str | None = None) -> None:
    check_patches(guard)
    op = current_operation()
    if op is None and not guard.has_stages and not _state.local.loads:
        return  # nobody would read it: no tool span, no pipeline stage, no load in progress
    args = _argv(argv)
    cwd_text = _text(cwd) if cwd is not None else None
    exe = _text(executable) if executable is not None else (args[0] if args else "")
    path = _resolve_executable(exe, env, cwd_text)
    parent = os.getpid()
    attributes: dict[str, Any] = {
        semconv.PROCESS_EXECUTABLE_PATH: path,
        semconv.AG_PROCESS_OPERATION: operation,
        semconv.PROCESS_PARENT_PID: parent,
        semconv.AG_SENSOR_AUDIT_EVENT: audit_event,
    }
    if op is not None and args and guard.capture.enabled:
        captured = guard.capture.text(shlex.join(args))
        if captured is not None:
            attributes[semconv.PROCESS_COMMAND_LINE] = captured
    if cwd_text:
        attributes[semconv.PROCESS_WORKING_DIRECTORY] = cwd_text

    def make(context: EventContext) -> ProcessExec:
        return ProcessExec.model_construct(
            context=context, timestamp=_seconds(obs.time_ns), executable=path, argv=args, pid=pid,
            ppid=parent, cwd=cwd_text)

    obs = Observation(semconv.EVENT_PROCESS_EXEC, attributes, make, f"process {path}",
                      filename=path)
    _during_load(guard, obs, f"process {path} started")
    park = None
    spawns = _state.local.spawns
    if park_kind is not None and spawns:
        top = spawns[-1]
        if top.kind == park_kind and top.observation is None:
            park = top
    report(guard, obs, park=park, op=op)


def _during_load(guard: Guard, obs: Observation, what: str) -> None:
    """Attribute an observation to the model load in progress and apply the load rule."""
    load = current_load()
    if load is None or unpickled_by_transport(load):
        return  # (multiprocessing's own unpickling: a manager proxy connects as it is rebuilt)
    source = load.path or f"<{load.source}>"
    obs.attributes[semconv.AG_MODEL_LOADING] = source
    if rule_enabled(guard, RULE_LOAD_SPAWN):
        obs.decisions.append(Decision.block(
            f"{what} while deserialising {source}", "critical", rule_id=RULE_LOAD_SPAWN,
            category="supply-chain",
            evidence={"model": source, "format": load.format, "loader": load.source}))


def _on_popen(guard: Guard, args: tuple[Any, ...]) -> None:
    executable, argv, cwd, env = args[:4]
    _process(guard, "spawn", executable, argv, cwd, env, "subprocess.Popen", park_kind="popen")


def _on_system(guard: Guard, args: tuple[Any, ...]) -> None:
    command = _text(args[0])  # system() audits the command as encoded for the OS
    wrapped = _state.local.system
    if wrapped is not None and command == wrapped[0]:
        command = _text(wrapped[1])  # the os.system wrapper's command: report the caller's
    _process(guard, "system", "/bin/sh", ["/bin/sh", "-c", command], None, None, "os.system")


def _on_exec(guard: Guard, args: tuple[Any, ...]) -> None:
    path, argv, env = args[:3]
    _process(guard, "exec", path, argv, None, env, "os.exec", pid=os.getpid())


def _on_posix_spawn(guard: Guard, args: tuple[Any, ...]) -> None:
    spawns = _state.local.spawns
    if spawns and spawns[-1].kind == "popen":
        return  # subprocess's own posix_spawn: the subprocess.Popen event already covered it
    path, argv, env = args[:3]
    _process(guard, "spawn", path, argv, None, env, "os.posix_spawn", park_kind="posix_spawn")


def _on_spawn(guard: Guard, args: tuple[Any, ...]) -> None:
    _mode, path, argv, env = args[:4]
    _process(guard, "spawn", path, argv, None, env, "os.spawn")


def _on_fork(guard: Guard, args: tuple[Any, ...]) -> None:
    _process(guard, "fork", sys.executable, [], None, None, "os.fork")


def _on_pty_spawn(guard: Guard, args: tuple[Any, ...]) -> None:
    argv = _argv(args[0])
    _process(guard, "spawn", argv[0] if argv else "", argv, None, None, "pty.spawn")


def _on_startfile(guard: Guard, args: tuple[Any, ...]) -> None:
    path = _text(args[0])
    _process(guard, "spawn", path, [path], None, None, "os.startfile")


# -- network -------------------------------------------------------------------------------------

def _on_connect(guard: Guard, args: tuple[Any, ...]) -> None:
    _state.set_local("repeat", None)
    _network(guard, args[0], args[1], "connect")
    if _state.local.repeat is not None:
        _remember(guard, "socket.connect", args)


def _on_send(guard: Guard, args: tuple[Any, ...]) -> None:
    if len(args) > 1 and args[1] is not None:
        _network(guard, args[0], args[1], "sendto")


def _network(guard: Guard, sock: Any, address: Any, operation: str) -> None:
    try:
        family = _FAMILY(sock)
    except Exception:
        return
    inet = family in (_AF_INET, _AF_INET6)
    if inet:
        if type(address) is not tuple or len(address) < 2:
            return
        host = address[0]
        if type(host) is not str:
            host = _text(host)
        port: int | None = address[1] if isinstance(address[1], int) else None
    elif family == _AF_UNIX:
        host = _text(address) if not isinstance(address, bytes) else \
            address.decode("utf-8", "backslashreplace")
        if not sensitive_unix_socket(host):
            return  # local IPC; only a container runtime's API socket matters
        port = None
    else:
        return
    # Settled before the rest of the parsing: a repeat on the tool's span is the common case.
    op = current_operation()
    key = ("net", operation, host, port)
    if needless(guard, op, key):
        return
    try:
        kind = _TYPE(sock)
    except Exception:
        return
    hostname: str | None = None
    if inet:
        if not _is_ip(host):
            hostname = host  # resolved inside connect(), with no separate lookup event
        transport = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        network_type: str | None = "ipv6" if family == _AF_INET6 else "ipv4"
        family_name = "inet6" if family == _AF_INET6 else "inet"
    else:
        transport = "unix"
        network_type = None
        family_name = "unix"
    datagram_key = None
    if operation == "sendto":
        span_id = op.span.get_span_context().span_id if op is not None else 0
        datagram_key = (id(guard), span_id, host, port)
        if datagram_key in _state.datagrams:
            _state.counters["datagrams_cached"] += 1
            return
    attributes: dict[str, Any] = {
        semconv.NETWORK_PEER_ADDRESS: host,
        semconv.NETWORK_TRANSPORT: transport,
        semconv.AG_NET_OPERATION: operation,
    }
    if port is not None:
        attributes[semconv.NETWORK_PEER_PORT] = port
    if network_type is not None:
        attributes[semconv.NETWORK_TYPE] = network_type
    if hostname is not None:
        attributes[semconv.SERVER_ADDRESS] = hostname

    def make(context: EventContext) -> NetConnect:
        return NetConnect.model_construct(
            context=context, timestamp=_seconds(obs.time_ns), address=host, port=port,
            family=family_name, protocol=transport, hostname=hostname)

    target = f"{host}:{port}" if port is not None else host
    obs = Observation(semconv.EVENT_NET_CONNECT, attributes, make, f"connection to {target}",
                      key=key)
    _during_load(guard, obs, f"connection to {target} opened")
    verdict = report(guard, obs, op=op)
    if datagram_key is not None and not verdict.findings:
        datagrams = _state.datagrams
        if len(datagrams) >= MAX_DATAGRAM_CACHE:
            datagrams.clear()
        datagrams[datagram_key] = True


def _lookup(guard: Guard, host: Any, port: Any, audit_event: str) -> None:
    if host is None:
        return
    name = _text(host)
    if not name or _is_ip(name):
        return  # a literal address: nothing is resolved
    op = current_operation()
    key = ("dns", name)
    if needless(guard, op, key):
        return
    number = port if isinstance(port, int) else None
    if isinstance(port, (str, bytes)) and port.isdigit():
        number = int(port)
    attributes: dict[str, Any] = {semconv.DNS_QUESTION_NAME: name,
                                  semconv.AG_SENSOR_AUDIT_EVENT: audit_event}

    def make(context: EventContext) -> DnsLookup:
        return DnsLookup.model_construct(context=context, timestamp=_seconds(obs.time_ns),
                                         hostname=name, port=number)

    obs = Observation(semconv.EVENT_DNS_LOOKUP, attributes, make, f"lookup of {name}", key=key)
    report(guard, obs, op=op)


def _on_getaddrinfo(guard: Guard, args: tuple[Any, ...]) -> None:
    _lookup(guard, args[0], args[1] if len(args) > 1 else None, "socket.getaddrinfo")


def _on_gethostbyname(guard: Guard, args: tuple[Any, ...]) -> None:
    _lookup(guard, args[0], None, "socket.gethostbyname")


# -- files ---------------------------------------------------------------------------------------

def _mode_of(mode: Any, flags: int) -> str:
    if isinstance(mode, str):
        return mode
    if flags & os.O_RDWR:
        return "r+"
    if flags & os.O_APPEND:
        return "a"
    if flags & os.O_WRONLY:
        return "w"
    return "r"


def _own_paths(guard: Guard) -> frozenset[str]:
    cached = _state.own_paths
    if cached is not None and cached[0] is guard:
        return cached[1]
    config = guard.config
    paths = frozenset(os.path.abspath(path) for path in (config.findings_file, config.profile)
                      if path)
    _state.own_paths = (guard, paths)
    return paths


def _on_open(guard: Guard, args: tuple[Any, ...]) -> None:
    _state.set_local("repeat", None)
    _open(guard, args)
    if _state.local.repeat is not None:
        _remember(guard, "open", args)


def _open(guard: Guard, args: tuple[Any, ...]) -> None:
    raw, mode, flags = args
    path = raw
    if type(path) is not str:
        if isinstance(path, int):
            return  # an already open descriptor
        path = _text(path)
    if type(flags) is not int:
        flags = 0
    write = bool(flags & _WRITE_FLAGS) if flags else (
        isinstance(mode, str) and any(c in mode for c in "wax+"))
    # Classified (and remembered as ordinary) by where the open goes, never by its spelling.
    known = True
    if path[:1] != "/":
        path, known = absolute(raw, path)
    else:
        path = normalised(path)
    if not write:
        if path in _state.ordinary_reads or path.endswith(_CODE_SUFFIXES):
            return
        category = classify_path(path, False)
        if category is None:
            if not known:
                category = UNKNOWN  # relative to a directory nobody could resolve: reported
            else:
                ordinary = _state.ordinary_reads
                if len(ordinary) >= MAX_ORDINARY_READS:
                    ordinary.clear()
                ordinary.add(path)
                return
        if category == MODEL:
            load = current_load()
            if load is not None and load.reported and load.path == path:
                return  # the loader already reported this file
            report_model_load(guard, path, model_format(path) or "unknown", "open")
            return
    elif path in _QUIET_WRITES or path.startswith("/dev/pts/") or "/__pycache__/" in path or \
            path in _own_paths(guard):
        return
    op = current_operation()
    key = ("file", path, write)
    if needless(guard, op, key):
        return
    if write:
        category = classify_path(path, True)
        if category is None and not known:
            category = UNKNOWN
    text_mode = _mode_of(mode, flags)
    attributes: dict[str, Any] = {semconv.FILE_PATH: path, semconv.AG_FILE_WRITE: write}
    if category is not None:
        attributes[semconv.AG_FILE_CATEGORY] = category

    def make(context: EventContext) -> FileOpen:
        return FileOpen.model_construct(context=context, timestamp=_seconds(obs.time_ns), path=path,
                                        mode=text_mode, write=write)

    verb = "write to" if write else "read of"
    obs = Observation(semconv.EVENT_FILE_OPEN, attributes, make, f"{verb} {path}", key=key,
                      filename=path)
    report(guard, obs, op=op)


def _on_sqlite(guard: Guard, args: tuple[Any, ...]) -> None:
    """``sqlite3.connect``: SQLite opens the database file in C, unseen by the ``open`` event."""
    database = _text(args[0]) if args and args[0] is not None else ""
    if not database or database == ":memory:":
        return
    write = True
    if database.startswith("file:"):
        database, _, query = database[5:].partition("?")
        if "mode=memory" in query or not database:
            return
        write = "mode=ro" not in query
    flags = os.O_RDWR if write else os.O_RDONLY
    _open(guard, (database, None, flags))


def report_model_load(guard: Guard, path: str, format: str, source: str) -> None:
    """Report a model artifact about to be loaded from ``path`` (size and digest included)."""
    op = current_operation()
    key = ("model", path)
    if needless(guard, op, key):
        return
    with _state.busy():
        size, sha256 = digest(path)
    attributes: dict[str, Any] = {semconv.FILE_PATH: path, semconv.AG_MODEL_FORMAT: format,
                                  semconv.AG_MODEL_SOURCE: source}
    if size is not None:
        attributes[semconv.AG_MODEL_SIZE] = size
    if sha256 is not None:
        attributes[semconv.AG_MODEL_SHA256] = sha256

    def make(context: EventContext) -> ModelLoad:
        return ModelLoad.model_construct(context=context, timestamp=_seconds(obs.time_ns), path=path,
                                         format=format, sha256=sha256, size=size, source=source,
                                         model_id=None)

    obs = Observation(semconv.EVENT_MODEL_LOAD, attributes, make, f"model load of {path}",
                      key=key, filename=path)
    report(guard, obs, op=op)


# -- code ----------------------------------------------------------------------------------------

def _on_import(guard: Guard, args: tuple[Any, ...]) -> None:
    if len(args) > 2 and args[2] is None:
        return  # the second event of an extension module (its file), after the first
    name = args[0]
    if isinstance(name, str):
        report_import(guard, name)


def report_import(guard: Guard, name: str) -> None:
    """Report the first load of ``name``'s top-level package (nothing for any later import)."""
    top = name.partition(".")[0]
    seen = _state.modules_seen
    if top in seen:
        return
    op = current_operation()
    if op is None and not guard.has_stages and not _state.local.loads:
        # Nobody would read it (no tool span, nothing judging): finding the package's
        # distribution and version is the expensive part of an import event, so skip it.
        if top in sys.modules and len(seen) < MAX_SEEN:
            seen.add(top)  # the C hook settles its submodules from now on
        return
    info = first_load(name)
    if info is None:
        return
    key = ("module", info.name)
    if needless(guard, op, key):
        return
    attributes: dict[str, Any] = {semconv.AG_MODULE_NAME: info.name,
                                  semconv.AG_MODULE_ORIGIN: info.origin}
    if info.distribution is not None:
        attributes[semconv.AG_MODULE_DISTRIBUTION] = info.distribution
    elif len(info.candidates) > 1:
        attributes[semconv.AG_MODULE_DISTRIBUTION] = list(info.candidates)
    if info.version is not None:
        attributes[semconv.AG_MODULE_VERSION] = info.version
    if info.file is not None:
        attributes[semconv.FILE_PATH] = info.file

    def make(context: EventContext) -> ModuleLoad:
        return ModuleLoad.model_construct(context=context, timestamp=_seconds(obs.time_ns),
                                          module=info.name, distribution=info.distribution,
                                          version=info.version)

    obs = Observation(semconv.EVENT_MODULE_LOAD, attributes, make, f"import of {info.name}",
                      key=key)
    report(guard, obs, op=op)


def _on_dlopen(guard: Guard, args: tuple[Any, ...]) -> None:
    if not args or args[0] is None:
        return
    library = _text(args[0])
    op = current_operation()
    key = ("dlopen", library)
    if needless(guard, op, key):
        return
    attributes: dict[str, Any] = {semconv.AG_MODULE_NAME: library,
                                  semconv.AG_MODULE_ORIGIN: "native",
                                  semconv.AG_SENSOR_AUDIT_EVENT: "ctypes.dlopen"}

    def make(context: EventContext) -> ModuleLoad:
        return ModuleLoad.model_construct(context=context, timestamp=_seconds(obs.time_ns),
                                          module=library, distribution=None, version=None)

    obs = Observation(semconv.EVENT_MODULE_LOAD, attributes, make,
                      f"native library load of {library}", key=key)
    report(guard, obs, op=op)


_UNSAFE_TEXT = {
    EXEC: ("run commands or code", "critical"),
    NETWORK: ("open network connections", "high"),
    FILE: ("write or delete files", "high"),
    STATE: ("rewrite the interpreter's state (a module, sys.modules, os.environ, sys.path, "
            "agentguard's own objects)", "high"),
    REFLECTION: ("reach any object by name", "medium"),
    UNRESOLVED: ("be anything: only running code (a module's __getattr__, a lazy attribute) "
                 "would tell what it names", "high"),
}


# Characters of a pickle's module or name kept in a finding (the stream chooses its length).
MAX_GLOBAL_TEXT = 200


def _clip(text: str) -> str:
    return text if len(text) <= MAX_GLOBAL_TEXT else f"{text[:MAX_GLOBAL_TEXT]}..."


def _on_find_class(guard: Guard, args: tuple[Any, ...]) -> None:
    module = args[0]
    name = args[1]
    if type(module) is not str or type(name) is not str:
        return
    why = unsafe_global(module, name)
    if why is None or not rule_enabled(guard, RULE_UNSAFE_PICKLE):
        return
    load = current_load()
    source = (load.path or f"<{load.source}>") if load is not None else None
    text, severity = _UNSAFE_TEXT[why]
    module, name = _clip(module), _clip(name)
    reason = f"pickle data names {module}.{name}, which can {text} while it loads"
    if source is not None:
        reason += f" ({source})"
    evidence = {"module": module, "name": name, "capability": why, "model": source,
                "format": load.format if load is not None else "pickle"}
    # Naming a process, network, file or interpreter primitive is never needed by data, nor is a
    # name that only code resolves: block. Reflection helpers have rare legitimate uses (a
    # pickled bound method names getattr): alert. multiprocessing's own unpickling (its
    # workers, result handler, spawn bootstrap) is only reported: refusing it kills a worker or
    # the pool's result thread, and the pool hangs.
    block = why != REFLECTION
    if block and unpickled_by_transport(load):
        block = False
        evidence["unpickled_by"] = "multiprocessing"
    factory: Callable[..., Decision] = Decision.block if block else Decision.alert
    decision = factory(reason, severity, rule_id=RULE_UNSAFE_PICKLE, category="supply-chain",
                       evidence=evidence)
    finding = native_finding(guard, "model_load", decision)
    emit_native(guard, finding, f"unpickling of {module}.{name}", source)


# -- the hook ------------------------------------------------------------------------------------

HANDLERS: dict[str, Handler] = {
    "subprocess.Popen": _on_popen,
    "os.system": _on_system,
    "os.exec": _on_exec,
    "os.posix_spawn": _on_posix_spawn,
    "os.spawn": _on_spawn,
    "os.fork": _on_fork,
    "os.forkpty": _on_fork,
    "pty.spawn": _on_pty_spawn,
    "os.startfile": _on_startfile,
    "socket.connect": _on_connect,
    "socket.sendto": _on_send,
    "socket.sendmsg": _on_send,
    "socket.getaddrinfo": _on_getaddrinfo,
    "socket.gethostbyname": _on_gethostbyname,
    "socket.gethostbyname_ex": _on_gethostbyname,
    "open": _on_open,
    "sqlite3.connect": _on_sqlite,
    "import": _on_import,
    "ctypes.dlopen": _on_dlopen,
    "pickle.find_class": _on_find_class,
    "object.__setattr__": on_setattr,
}


def _contain(guard: Guard, event: str, exc: Exception) -> None:
    """Contain an internal error; fail closed (block) when the configuration asks for it."""
    internal_error(f"sensor {event}", exc)
    if not (event in _JUDGED and guard.fails_closed):
        return
    try:
        with _state.busy():
            finding = guard.internal_failure_finding(f"sensor {event}", exc, kind=event)
    except Exception as err:
        internal_error("sensor fail closed", err)
        return
    raise OperationBlocked(finding, event) from None


def run_handler(guard: Guard, event: str, handler: Callable[..., None], *args: Any) -> None:
    """Run ``handler(guard, *args)`` as the hook would, internal errors contained."""
    if _state.local.state:
        return
    try:
        handler(guard, *args)
    except OperationBlocked:
        raise
    except Exception as exc:
        _contain(guard, event, exc)


# Repeats remembered per thread (for one context at a time).
MAX_REPEATS = 64


def _repeat_key(event: str, args: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """What identifies a repeat of a file open or connection from the raw audit arguments, as
    ``(key, check)``: an absolute path and its open flags (a relative path depends on the cwd;
    the flags decide whether it is a write), an IPv4 host and its port, or another IP address
    and ``None``. ``None``: not remembered. Keyed by a string, the C hook's lookup compares no
    tuples."""
    if event == "open":
        path, flags = args[0], args[2]
        if type(path) is str and path[:1] == "/" and type(flags) is int and flags:
            return path, flags
        return None
    address = args[1]
    if type(address) is tuple:
        if len(address) == 2 and type(address[0]) is str and type(address[1]) is int:
            return address  # an IPv4 (host, port): the host string, its port as the check
        return address, None
    return None


read_context = context_reader()


def _remember(guard: Guard, event: str, args: tuple[Any, ...]) -> None:
    """After a handler found its event already on the tool's span (``needless``), remember the
    raw arguments, so the hook settles the next repeat in this context at once."""
    local = _state.local
    repeat = local.repeat
    if repeat is None:
        return
    _state.set_local("repeat", None)
    if read_context is None:
        return
    try:
        found = _repeat_key(event, args)
        if found is None:
            return
        key, check = found
        context = read_context()
        repeats = local.repeats
        if repeats is None or repeats[0] is not context or repeats[1] is not guard:
            repeats = (context, guard, {})
            _state.set_local("repeats", repeats)
        table = repeats[2]
        if len(table) >= MAX_REPEATS:
            table.clear()
        table[key] = (*repeat, check)
    except TypeError:
        return  # an unhashable address: nothing to remember


def _on_probe(guard: Guard, args: tuple[Any, ...]) -> None:
    """Answers :func:`install`'s probe (handled inside the hook, whatever the state)."""


PROBE_EVENT = "agentguard.sensors.probe"
# Raised by the C hook's switch before it changes (``_fasthook.set_active``).
CONTROL_EVENT = "agentguard.sensors.fasthook"
# "python": use the pure-Python hook even when the C extension is built.
HOOK_ENV = "AGENTGUARD_SENSOR_HOOK"


# What each control event of the C hook means when nobody but agentguard should raise it:
# (finding title, the call made, what was being done). ``False`` is set_active switching off.
_CONTROL_TAMPER: dict[object, tuple[str, str, str]] = {
    "install": ("agentguard's audit hook was being reinstalled (its callback and events "
                "replaced) outside instrument()", "install", "reinstalling the audit hook"),
    "repeats": ("agentguard's audit hook was being given another repeat table outside "
                "instrument()", "repeats", "reconfiguring the audit hook"),
    "unjudged": ("agentguard's audit hook was being told that nothing judges repeated events "
                 "outside instrument()", "set_judged", "reconfiguring the audit hook"),
    False: ("agentguard's audit hook was being switched off outside "
            "instrument()/uninstrument()", "set_active", "switching the audit hook off"),
}


def _on_control(guard: Guard, args: tuple[Any, ...]) -> None:
    """The C hook being installed again, switched off or pointed at another repeat table by
    anyone but :func:`install` and :func:`activate` is tampering."""
    if not args or args[0] is True:
        return
    key = args[0] if isinstance(args[0], str) else False
    title, call, doing = _CONTROL_TAMPER.get(key, _CONTROL_TAMPER[False])
    report_tamper(guard, title, {"call": f"agentguard.sensors._fasthook.{call}"}, doing)


def _fold_repeats(pending: list[tuple[Any, Any, int]]) -> None:
    """Write the repeats the C hook counted onto their spans (what the Python hook does on each
    hit, once per span): called by ``_fasthook.flush()`` just before agentguard ends a span."""
    try:
        for span, state, count in pending:
            if span.is_recording():
                state.suppressed += count
                _state.counters["span_events_suppressed"] += count
                span.set_attribute(semconv.AG_SENSOR_SUPPRESSED, state.suppressed)
    except Exception as exc:
        internal_error("sensor repeat counts", exc)


def _make_hook(handlers: dict[str, Handler]) -> Callable[[str, tuple[Any, ...]], None]:
    lookup = handlers.get
    local = _state.local
    agentguard_state = _agentguard_state
    on_open = handlers.get("open")
    on_connect = handlers.get("socket.connect")
    on_probe = handlers.get(PROBE_EVENT)
    on_find_class = handlers.get("pickle.find_class")
    verdicts = _state.pickle_verdicts
    ordinary = _state.ordinary_reads
    write_flags = _WRITE_FLAGS
    code_suffixes = _CODE_SUFFIXES
    read_context = context_reader() or (lambda: None)
    suppressed_attribute = semconv.AG_SENSOR_SUPPRESSED
    counters = _state.counters

    def agentguard_audit_hook(event: str, args: tuple[Any, ...]) -> None:
        handler = lookup(event)
        if handler is None:
            return
        guard = None
        try:
            if handler is on_open:
                # Reads of code and of files read before are most of all events: settled here,
                # before anything else is looked at.
                path = args[0]
                if type(path) is str and type(args[2]) is int and not args[2] & write_flags \
                        and (path in ordinary or path.endswith(code_suffixes)):
                    return
            elif handler is on_probe:
                args[0].append(True)
                return
            elif handler is on_find_class and verdicts.get(args, _UNJUDGED) is None:
                # A global already judged safe (the event's arguments are (module, name), the
                # verdict cache's key): nothing to do, whoever is watching.
                return
            guard = agentguard_state.guard
            # local.state is non-zero while the sensor itself runs on this thread (its own
            # opens, imports, sockets, and whatever policies and sinks do) and on agentguard's
            # own threads.
            if guard is None or local.state or not guard.config.runtime_sensor:
                return
            repeats = local.repeats
            # (Emptied when a model load starts, and never filled while one is in progress.)
            if repeats is not None and (handler is on_connect or handler is on_open) and \
                    repeats[1] is guard and repeats[0] is read_context() and \
                    not guard.has_stages:
                # The same connection or file again in the same tool call (same context): only
                # counted on the span, as the handler would, without parsing anything again.
                found = _repeat_key(event, args)
                hit = repeats[2].get(found[0]) if found is not None else None
                if found is not None and hit is not None and hit[2] == found[1]:
                    # (The same open flags, or the same port.)
                    span, state, _ = hit
                    if span.is_recording():
                        state.suppressed += 1
                        counters["span_events_suppressed"] += 1
                        span.set_attribute(suppressed_attribute, state.suppressed)
                    return
            # Handlers filter cheaply first and mark the thread busy before doing anything that
            # raises audit events of its own.
            handler(guard, args)
        except OperationBlocked:
            raise
        except Exception as exc:
            if guard is None:
                internal_error(f"sensor {event}", exc)
            else:
                _contain(guard, event, exc)

    return agentguard_audit_hook


_ALL_HANDLERS: dict[str, Handler] = {**HANDLERS, PROBE_EVENT: _on_probe, CONTROL_EVENT: _on_control}
HOOK = _make_hook(_ALL_HANDLERS)


def installed() -> bool:
    """Whether the audit hook is in place (it stays for the life of the process)."""
    return _state.hook_installed


def hook_kind() -> str | None:
    """``"native"`` (entered from the C extension), ``"python"``, or ``None`` before install."""
    if not _state.hook_installed:
        return None
    return "native" if _state.native is not None else "python"


def _load_native() -> Any:
    """The C extension, or ``None`` when it is not built or the pure-Python hook is asked for."""
    if os.environ.get(HOOK_ENV, "").strip().lower() == "python":
        return None
    try:
        from agentguard.sensors import _fasthook
    except ImportError:
        return None
    return _fasthook


def install() -> None:
    """Add the audit hook to the interpreter, once, and check that it runs."""
    if _state.hook_installed:
        return
    native = _load_native()
    if native is not None:
        try:
            # (None when an existing hook refused it: the probe below fails too.)
            native.install(HOOK, tuple(_ALL_HANDLERS), (PROBE_EVENT, CONTROL_EVENT),
                           _state.ordinary_reads, _state.modules_seen, CODE_ATTRIBUTES,
                           _WRITE_FLAGS)
        except Exception as exc:
            internal_error("sensor native hook", exc)
            native = None
    if native is None:
        sys.addaudithook(HOOK)
    # CPython silently skips a new hook when an existing one refuses it with RuntimeError.
    answered: list[bool] = []
    sys.audit(PROBE_EVENT, answered)
    _state.hook_installed = bool(answered)
    if answered:
        _state.native = native
    else:
        logger.warning("agentguard runtime sensor: the audit hook could not be added (another "
                       "audit hook refused it); processes, connections and files are not watched")


def _native_repeats(native: Any) -> None:
    """Let the C hook settle repeats from the thread's table itself, when the OpenTelemetry
    context is the standard contextvars one (the table is only filled then)."""
    if read_context is None:
        return
    variable = getattr(read_context, "__self__", None)
    if not isinstance(variable, contextvars.ContextVar):
        return
    try:
        # Our own configuration: the control event it raises is not tampering.
        with _state.busy():
            native.repeats(_state.local, _agentguard_state, variable, _fold_repeats)
    except Exception as exc:
        internal_error("sensor native repeats", exc)


def _stages_changed(guard: Guard) -> None:
    """``Guard._refresh`` while the C hook runs: whether the guard :func:`activate` was given
    judges events decides whether the hook may settle repeats itself."""
    native = _state.native
    if native is None or guard is not _state.stages_guard:
        return
    try:
        # Our own configuration: the control event it raises is not tampering.
        with _state.busy():
            native.set_judged(guard, guard.has_stages)
    except Exception as exc:
        internal_error("sensor native stages", exc)


def activate(on: bool, guard: Guard | None = None) -> None:
    """Let the C hook pass events to Python (``True``, for ``guard``, about to be the active
    guard) or keep them in C (``False``), and watch writes to the active Guard while on.

    The pure-Python hook checks agentguard's state on every event instead. Called by the
    sensor's ``start()``/``stop()`` only: from anywhere else it is tampering.
    """
    _tamper.check_caller("agentguard.sensors", "agentguard.sensors._hook.activate",
                         "switching the runtime sensor")
    # Writes to the active Guard from outside agentguard are watched while the sensor runs,
    # whichever hook enters it.
    _guard.attribute_written = _tamper.guard_attribute_written if on else None
    native = _state.native
    if native is None:
        return
    if on:
        # (Again at every start: whatever a tool may have pointed the hook at is replaced.)
        _native_repeats(native)
        # Repeats counted in C reach a span just before agentguard ends it.
        _guard.before_span_end = native.flush
        _state.stages_guard = guard
        _guard.stages_changed = _stages_changed
    else:
        _guard.before_span_end = None
        _guard.stages_changed = None
        _state.stages_guard = None
        native.flush()
    # Our own switch: the control events they raise are not tampering.
    with _state.busy():
        native.set_judged(guard if on else None, not on or guard is None or guard.has_stages)
        native.set_active(on)
