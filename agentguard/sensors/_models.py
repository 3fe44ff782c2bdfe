"""Model artifacts: loads in progress, file digests, and pickle globals that execute code.

A pickle runs code while it loads: its stream names callables (``pickle.find_class``) and calls
them. The sensor sees each name before it is resolved, and knows which load is in progress on the
thread (the loader wrappers push a :class:`Load`), so a process spawned or a connection opened by
a model payload is attributed to the file being deserialised.
"""

from __future__ import annotations

import _compat_pickle
import functools
import hashlib
import importlib
import os
import sys
from collections.abc import Iterable, MutableMapping, MutableSequence, MutableSet
from enum import Enum
from types import (
    BuiltinFunctionType,
    ClassMethodDescriptorType,
    FrameType,
    FunctionType,
    GetSetDescriptorType,
    MemberDescriptorType,
    MethodDescriptorType,
    MethodType,
    ModuleType,
    WrapperDescriptorType,
)
from typing import Any

from agentguard._errors import internal_error
from agentguard._files import open_regular
from agentguard.sensors import _state
from agentguard.sensors._emit import OperationBlocked

__all__ = ["EXEC", "FILE", "NETWORK", "REFLECTION", "STATE", "UNRESOLVED", "Load", "current_load",
           "digest", "unpickled_by_transport", "unsafe_global"]

# Model files larger than this are not hashed (the loader reads them anyway; hashing would read
# them twice on the agent's thread).
MAX_HASH_BYTES = 16 << 20
MAX_DIGESTS = 256
_CHUNK = 1 << 20


class Load:
    """A model or pickle load in progress on this thread."""

    __slots__ = ("format", "path", "reported", "source", "transport")

    def __init__(self, path: str | None, format: str, source: str) -> None:
        self.path = path
        self.format = format
        self.source = source
        # Whether a model.load event for ``path`` was already reported (the open that follows
        # must not report it again).
        self.reported = False
        # Whether multiprocessing's own machinery asked for this load (found when first needed,
        # see :func:`unpickled_by_transport`).
        self.transport: bool | None = None


def current_load() -> Load | None:
    loads = _state.local.loads
    return loads[-1] if loads else None


def digest(path: str) -> tuple[int | None, str | None]:
    """The size of a regular file and, when it is small enough, its SHA-256 (cached)."""
    try:
        handle, size = open_regular(path)
    except (OSError, ValueError):  # no regular file (a pipe swapped in waits for no writer)
        return None, None
    with handle:
        if size > MAX_HASH_BYTES:
            return size, None
        try:
            key = (path, size, os.fstat(handle.fileno()).st_mtime_ns)
        except OSError:
            return size, None
        cached = _state.digests.get(key)
        if cached is not None:
            return size, cached
        sha = hashlib.sha256()
        remaining = MAX_HASH_BYTES
        try:
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                sha.update(chunk)
                remaining -= len(chunk)
        except OSError:
            return size, None
    value = sha.hexdigest()
    if len(_state.digests) >= MAX_DIGESTS:
        _state.digests.clear()
    _state.digests[key] = value
    return size, value


# -- pickle globals --------------------------------------------------------------------------------
#
# A pickle names every callable it calls and every class it builds as (module, name); the
# unpickler imports the module and walks the (dotted, from protocol 4) name. One function has
# many spellings: ``os.system`` is ``posix.system``, ``shutil.os.system``, ``tempfile._os.system``.
# So a global is judged by what it resolves to: the sensor walks the name itself, through module
# and class dictionaries only (no descriptor, property or ``__getattr__`` runs), and judges each
# object met on the way by its own module and qualified name. A name only running code could
# resolve (a module's ``__getattr__``, a lazy attribute of a module's class, an attribute of an
# object) is unresolved: unsafe, unless its spelling says more.

EXEC = "exec"
NETWORK = "network"
FILE = "file"
STATE = "state"
REFLECTION = "reflection"
UNRESOLVED = "unresolved"

# Judged globals remembered (cleared when full). Names longer than this or nested deeper are
# unresolved without being walked (no class or function has such a name), and not remembered.
MAX_VERDICTS = 4096
MAX_NAME = 512
MAX_PARTS = 32
# Wrappers unwrapped to find what a callable is (a classmethod of a partial of a function).
MAX_UNWRAP = 8


def _entries(why: str, modules: Iterable[str], names: Iterable[str]) -> dict[tuple[str, str], str]:
    listed = tuple(names)
    return {(module, name): why for module in modules for name in listed}


_OS = ("os", "posix", "nt")
# Callables (module, qualified name) that act as soon as a pickle calls them with arguments it
# supplies: start processes, run code, open connections, write or delete files, or reach any
# object by name. Both the spelling a pickle uses and the object's own module are listed where
# they differ (``io.open`` is ``builtins.open``; a function is ``builtins.function``).
_UNSAFE: dict[tuple[str, str], str] = {
    **_entries(EXEC, _OS, (
        "system", "popen", "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp",
        "execvpe", "_execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve",
        "spawnvp", "spawnvpe", "_spawnvef", "posix_spawn", "posix_spawnp", "fork", "forkpty",
        "startfile", "putenv", "unsetenv", "register_at_fork")),
    **_entries(FILE, _OS, (
        "open", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
        "truncate", "ftruncate", "chmod", "lchmod", "fchmod", "chown", "lchown", "fchown",
        "symlink", "link", "mkdir", "makedirs", "mkfifo", "mknod", "chroot", "chdir", "fchdir",
        "write", "pwrite", "writev", "pwritev", "dup2", "sendfile", "copy_file_range", "splice",
        "setxattr", "removexattr")),
    **_entries(EXEC, ("subprocess", "commands"), (
        "Popen", "call", "run", "check_call", "check_output", "getoutput", "getstatusoutput")),
    **_entries(EXEC, ("builtins", "__builtin__"), (
        "eval", "exec", "compile", "__import__", "breakpoint", "execfile", "__build_class__",
        "function", "code")),
    **_entries(REFLECTION, ("builtins", "__builtin__"), (
        "getattr", "setattr", "delattr", "vars", "globals", "locals", "apply")),
    **_entries(FILE, ("builtins", "__builtin__", "io", "_io"), ("open",)),
    **_entries(FILE, ("io", "_io"), ("open_code", "FileIO")),
    **_entries(REFLECTION, ("operator", "_operator"), ("attrgetter", "methodcaller")),
    # Nested loads: a second pickle (or marshalled code) inside the first.
    **_entries(EXEC, ("pickle", "_pickle", "cPickle"), (
        "loads", "load", "Unpickler", "_loads", "_load", "_Unpickler")),
    **_entries(EXEC, ("types",), ("FunctionType", "LambdaType", "CodeType")),
    # Code rebuilt by the pickle extensions that carry functions by value.
    **_entries(EXEC, ("cloudpickle", "cloudpickle.cloudpickle"), (
        "_builtin_type", "_make_function", "_make_code", "_make_skel_func")),
    **_entries(EXEC, ("dill", "dill._dill"), (
        "_create_code", "_create_function", "_load_type", "_import_module", "_eval_repr")),
    **_entries(EXEC, ("sys",), (
        "settrace", "setprofile", "addaudithook", "call_tracing", "breakpointhook")),
    **_entries(REFLECTION, ("sys",), ("_getframe", "_current_frames", "_current_exceptions")),
    **_entries(EXEC, ("threading",), (
        "settrace", "setprofile", "settrace_all_threads", "setprofile_all_threads")),
    **_entries(REFLECTION, ("gc",), ("get_objects", "get_referrers", "get_referents")),
    **_entries(REFLECTION, ("pydoc",), ("locate",)),
    **_entries(REFLECTION, ("pkgutil",), ("resolve_name",)),
    **_entries(REFLECTION, ("inspect",), ("getattr_static",)),
    # Runners of code given as text.
    **_entries(EXEC, ("timeit",), ("timeit", "repeat", "Timer")),
    **_entries(EXEC, ("profile", "cProfile"), (
        "run", "runctx", "Profile.run", "Profile.runctx", "Profile.runcall")),
    **_entries(EXEC, ("pdb",), (
        "run", "runeval", "runctx", "runcall", "set_trace", "post_mortem", "pm", "Pdb")),
    **_entries(EXEC, ("bdb",), ("Bdb.run", "Bdb.runeval", "Bdb.runctx", "Bdb.runcall")),
    **_entries(EXEC, ("trace",), ("Trace.run", "Trace.runctx", "Trace.runfunc")),
    **_entries(EXEC, ("doctest",), (
        "run_docstring_examples", "debug_src", "debug_script", "debug", "testfile", "testmod")),
    **_entries(EXEC, ("distutils.spawn", "setuptools._distutils.spawn"), ("spawn",)),
    **_entries(EXEC, ("multiprocessing.util",), ("spawnv_passfds",)),
    **_entries(EXEC, ("multiprocessing.popen_fork", "multiprocessing.popen_spawn_posix",
                      "multiprocessing.popen_forkserver", "multiprocessing.popen_spawn_win32"),
               ("Popen",)),
    **_entries(EXEC, ("multiprocessing.process",), ("BaseProcess.start", "BaseProcess.run")),
    **_entries(NETWORK, ("multiprocessing.connection",), (
        "Client", "Listener", "SocketClient", "SocketListener")),
    **_entries(FILE, ("shutil",), (
        "rmtree", "move", "copy", "copy2", "copyfile", "copytree", "copymode", "copystat", "chown",
        "make_archive", "unpack_archive", "_rmtree_safe_fd", "_rmtree_unsafe")),
    **_entries(FILE, ("pathlib",), (
        "Path.write_text", "Path.write_bytes", "Path.unlink", "Path.rmdir", "Path.rename",
        "Path.replace", "Path.touch", "Path.mkdir", "Path.chmod", "Path.lchmod",
        "Path.symlink_to", "Path.hardlink_to", "Path.link_to", "Path.open")),
    **_entries(NETWORK, ("socket", "_socket"), (
        "socket", "SocketType", "create_connection", "create_server", "fromfd", "getaddrinfo",
        "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")),
    **_entries(NETWORK, ("ssl",), ("get_server_certificate",)),
    **_entries(NETWORK, ("urllib.request", "urllib2", "urllib"), (
        "urlopen", "urlretrieve", "build_opener", "install_opener", "URLopener",
        "FancyURLopener", "OpenerDirector.open")),
    **_entries(NETWORK, ("http.client", "httplib"), ("HTTPConnection", "HTTPSConnection")),
    **_entries(NETWORK, ("http.server",), ("HTTPServer", "ThreadingHTTPServer", "test")),
    **_entries(EXEC, ("http.server",), ("CGIHTTPRequestHandler",)),
    **_entries(NETWORK, ("socketserver", "SocketServer"), (
        "TCPServer", "UDPServer", "ThreadingTCPServer", "ThreadingUDPServer", "ForkingTCPServer",
        "ForkingUDPServer", "UnixStreamServer", "UnixDatagramServer",
        "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer")),
    **_entries(NETWORK, ("xmlrpc.server",), ("SimpleXMLRPCServer", "DocXMLRPCServer")),
    **_entries(NETWORK, ("smtplib",), ("SMTP", "SMTP_SSL", "LMTP")),
    **_entries(NETWORK, ("ftplib",), ("FTP", "FTP_TLS")),
    **_entries(NETWORK, ("poplib",), ("POP3", "POP3_SSL")),
    **_entries(NETWORK, ("imaplib",), ("IMAP4", "IMAP4_SSL")),
    **_entries(EXEC, ("imaplib",), ("IMAP4_stream",)),
    **_entries(NETWORK, ("nntplib",), ("NNTP", "NNTP_SSL")),
    **_entries(NETWORK, ("telnetlib",), ("Telnet",)),
    # Ending or signalling the agent's process (SystemExit escapes the tool that loads).
    **_entries(EXEC, _OS, ("kill", "killpg", "abort", "_exit")),
    **_entries(EXEC, ("sys",), ("exit",)),
    **_entries(EXEC, ("builtins", "__builtin__"), ("exit", "quit", "input")),
    **_entries(EXEC, ("_thread", "thread"), ("exit", "interrupt_main")),
    **_entries(EXEC, ("signal", "_signal"), ("raise_signal", "pthread_kill")),
    # Configuration that resolves and calls callables by name, or listens for it.
    **_entries(EXEC, ("logging.config",), ("dictConfig", "fileConfig")),
    **_entries(NETWORK, ("logging.config",), ("listen",)),
    # Coroutines are inert until run: the runners are what a payload needs.
    **_entries(EXEC, ("asyncio", "asyncio.runners"), ("run", "Runner", "Runner.run")),
    **_entries(EXEC, ("asyncio.base_events",), (
        "BaseEventLoop.run_until_complete", "BaseEventLoop.run_forever",
        "BaseEventLoop.subprocess_exec", "BaseEventLoop.subprocess_shell")),
    **_entries(EXEC, ("asyncio", "asyncio.subprocess"), (
        "create_subprocess_exec", "create_subprocess_shell")),
    **_entries(NETWORK, ("asyncio", "asyncio.streams"), (
        "open_connection", "start_server", "open_unix_connection", "start_unix_server")),
    # Loaders of other pickles (and of YAML that builds objects): a second payload inside.
    **_entries(EXEC, ("dill", "dill._dill"), ("load", "loads", "Unpickler")),
    **_entries(EXEC, ("joblib", "joblib.numpy_pickle"), ("load",)),
    **_entries(EXEC, ("torch", "torch.serialization"), ("load",)),
    **_entries(EXEC, ("numpy",), ("load",)),
    **_entries(EXEC, ("pandas", "pandas.io.pickle"), ("read_pickle",)),
    **_entries(EXEC, ("shelve",), ("open", "Shelf", "DbfilenameShelf")),
    **_entries(EXEC, ("yaml",), ("load", "load_all", "unsafe_load", "unsafe_load_all")),
    # Files opened for writing by a library (the open is judged too, as any file event).
    **_entries(FILE, ("codecs",), ("open",)),
    **_entries(FILE, ("gzip",), ("open", "GzipFile")),
    **_entries(FILE, ("bz2",), ("open", "BZ2File")),
    **_entries(FILE, ("lzma",), ("open", "LZMAFile")),
    **_entries(FILE, ("tarfile",), ("open", "TarFile", "TarFile.open")),
    **_entries(FILE, ("zipfile",), ("ZipFile",)),
    **_entries(FILE, ("dbm", "dbm.dumb", "dbm.gnu", "dbm.ndbm"), ("open",)),
    **_entries(FILE, ("sqlite3", "_sqlite3"), ("connect",)),
    **_entries(FILE, ("tempfile",), ("mkstemp", "mkdtemp", "NamedTemporaryFile")),
    **_entries(FILE, ("logging",), ("FileHandler", "basicConfig")),
}

# Modules (with their submodules) where everything runs code, loads native code or starts
# processes, and the names in each that are plain data. Exception classes and enums anywhere are
# data.
_UNSAFE_MODULES: dict[str, tuple[str, frozenset[str]]] = {
    "code": (EXEC, frozenset()),
    "codeop": (EXEC, frozenset()),
    "runpy": (EXEC, frozenset()),
    "pty": (EXEC, frozenset()),
    "_posixsubprocess": (EXEC, frozenset()),
    "webbrowser": (EXEC, frozenset()),
    "marshal": (EXEC, frozenset()),
    "importlib": (EXEC, frozenset()),
    "_imp": (EXEC, frozenset()),
    "zipimport": (EXEC, frozenset()),
    "ctypes": (EXEC, frozenset({"Structure", "Union", "Array", "BigEndianStructure",
                                "LittleEndianStructure", "BigEndianUnion", "LittleEndianUnion",
                                "sizeof", "alignment"})),
    "_ctypes": (EXEC, frozenset({"Structure", "Union", "Array", "_SimpleCData", "_Pointer",
                                 "_unpickle", "sizeof", "alignment"})),
}
# Third-party HTTP and SSH clients: their request functions and methods (``requests.get``,
# ``httpx.Client.post``, ``urllib3.PoolManager.urlopen``, ``paramiko.SSHClient.exec_command``).
# Their response, request and cookie classes are data.
_NETWORK_LIBRARIES = frozenset({"requests", "httpx", "urllib3", "aiohttp", "httplib2", "pycurl",
                                "paramiko", "fabric", "websocket", "websockets"})
_NETWORK_VERBS = frozenset({"get", "post", "put", "patch", "delete", "head", "options",
                            "request", "stream", "send", "urlopen", "request_encode_url",
                            "request_encode_body", "connection_from_url", "proxy_from_url",
                            "connect", "create_connection", "exec_command", "invoke_shell",
                            "open_sftp", "run", "sudo", "Curl"})
# Attributes no pickle of data names: the namespaces and code of functions and modules.
_STATE_DUNDERS = frozenset({"__dict__", "__globals__", "__builtins__", "__closure__", "__code__",
                            "__defaults__", "__kwdefaults__", "__self__", "__func__"})
_MUTABLE = (dict, list, set, bytearray, MutableMapping, MutableSequence, MutableSet)
_DESCRIPTORS = (MethodDescriptorType, WrapperDescriptorType, ClassMethodDescriptorType)
_MISSING: Any = object()
_OPAQUE: Any = object()


def unsafe_global(module: str, name: str) -> str | None:
    """Why a pickle global is unsafe, or ``None``: ``"exec"`` (runs commands or code, or ends
    the process), ``"network"`` (opens connections), ``"file"`` (writes or deletes files),
    ``"state"`` (a module or a process-wide container: sys.modules, os.environ, sys.path, a
    module's globals, agentguard's own objects, which the pickle can then rewrite),
    ``"reflection"`` (reaches any object by name) or ``"unresolved"`` (only running code could
    tell what the name is).

    A module the pickle names that is not imported yet is imported first, as the unpickler is
    about to do (an import the sensor sees and judges like any other; a refused import refuses
    the unpickling). Never raises anything else: a name the sensor fails to judge is unresolved.
    """
    key = (module, name)
    verdicts = _state.pickle_verdicts
    verdict = verdicts.get(key, _MISSING)
    if verdict is not _MISSING:
        return verdict  # type: ignore[no-any-return]
    if len(module) > MAX_NAME or len(name) > MAX_NAME or name.count(".") >= MAX_PARTS:
        return UNRESOLVED
    try:
        verdict, final = _judge(module, name)
    except OperationBlocked:
        raise
    except Exception as exc:
        internal_error("sensor pickle global", exc)
        return UNRESOLVED
    if final:
        if len(verdicts) >= MAX_VERDICTS:
            verdicts.clear()
        verdicts[key] = verdict
    return verdict


def _judge(module: str, name: str) -> tuple[str | None, bool]:
    """The verdict on a global, and whether it is final (the name was resolved)."""
    # The unpickler maps Python 2 names for protocols 0-2, which the stream chooses.
    mapped = _compat_pickle.NAME_MAPPING.get(key := (module, name))
    if mapped is None and module in _compat_pickle.IMPORT_MAPPING:
        mapped = (_compat_pickle.IMPORT_MAPPING[module], name)
    spellings = [key] if mapped is None or mapped == key else [key, mapped]
    moved = module == "numpy.core" or module.startswith("numpy.core.")
    if moved:
        # numpy 2 moved numpy.core to numpy._core and left a shim whose module __getattr__
        # hands out the moved names: what a numpy 1.x pickle (numpy.core.numeric._frombuffer)
        # reaches. Judged there first; without numpy 2 that module does not import and the
        # name is judged as spelled.
        spellings.insert(0, ("numpy._core" + module[len("numpy.core"):], name))
    for spelled_module, spelled_name in spellings:
        why = _by_name(spelled_module, spelled_name.split("."), whole_modules=False)
        if why is not None:
            return why, True
    for index, (spelled_module, spelled_name) in enumerate(spellings):
        target = _module(spelled_module)
        if target is not None:
            # (Only the moved spelling, first, may pass its turn to the next.)
            moved = moved and index == 0
            verdict, final = _resolve(spelled_module, target, spelled_name.split("."))
            if final or index + 1 == len(spellings) or not moved:
                return verdict, final
            # Not in numpy._core: the shim's own module is what the unpickler reaches.
    # Nothing to resolve (a module that cannot be imported): the unpickler fails on it too.
    return _by_name(module, name.split("."), whole_modules=True), False


def _dunder(part: str) -> bool:
    return part[:2] == "__" and part[-2:] == "__"


def _by_name(module: str, parts: list[str], *, whole_modules: bool) -> str | None:
    """The verdict on a name as spelled (``module``, qualified name split at its dots)."""
    qualname = parts[0]
    if (module, qualname) in _UNSAFE:
        return _UNSAFE[(module, qualname)]
    for part in parts[1:]:
        if _dunder(part) and part != "__new__":
            return STATE if part in _STATE_DUNDERS else REFLECTION
        qualname = f"{qualname}.{part}"
        why = _UNSAFE.get((module, qualname))
        if why is not None:
            return why
    root = module.partition(".")[0]
    if root in _NETWORK_LIBRARIES and parts[-1] in _NETWORK_VERBS:
        return NETWORK
    if whole_modules:
        prefix = ""
        for piece in module.split("."):
            prefix = f"{prefix}.{piece}" if prefix else piece
            rule = _UNSAFE_MODULES.get(prefix)
            if rule is not None and parts[0] not in rule[1] and \
                    not (prefix.endswith("ctypes") and parts[0].startswith("c_")):
                return rule[0]
    return None


def _module(name: str) -> Any:
    """The module ``name`` names (imported now when it is not yet), or ``None``."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    try:
        return importlib.import_module(name)
    except OperationBlocked:
        raise  # the import itself was refused: so is the unpickling
    except Exception:
        return None


def _resolve(module: str, target: Any, parts: list[str]) -> tuple[str | None, bool]:
    """Walk ``parts`` from ``target`` (module ``module``) through module and class dictionaries,
    judging every object met."""
    last = len(parts) - 1
    through_module = False
    for index, part in enumerate(parts):
        if isinstance(target, ModuleType):
            value = _module_attribute(target, part)
        elif isinstance(target, type):
            value = _class_attribute(target, part)
        else:
            # An attribute of an object (``sys.modules`` holding something else than a module,
            # or data reached by name, which no pickle of data does): whatever its type's
            # descriptors or __getattr__ return.
            value = _OPAQUE
        if value is _MISSING or value is _OPAQUE:
            if _dunder(part):
                return (STATE if part in _STATE_DUNDERS else REFLECTION), True
            if value is _MISSING:
                return None, False  # no such attribute: the unpickler fails on it too
            return _by_name(module, parts, whole_modules=True) or UNRESOLVED, True
        if index < last and isinstance(value, ModuleType):
            # Through another module (``tempfile._os.system``): judged by what it leads to, and
            # unsafe anyway (no pickle of data names a module).
            through_module = True
            target = value
            continue
        why = _object_verdict(value)
        if why is None and callable(value) and not isinstance(value, type) and \
                _callable_name(value) is None:
            # A callable object (a ctypes function pointer, a loader instance): judged by where
            # it lives.
            why = _by_name(module, parts[:index + 1], whole_modules=True)
        if why is not None:
            return why, True
        target = value
    return (STATE if through_module else None), True


def _module_attribute(module: ModuleType, name: str) -> Any:
    """``name`` in ``module``'s dictionary; ``_OPAQUE`` when only code would make it (a module
    ``__getattr__``, or a module whose class has the attribute or looks names up itself: six's
    lazy ``six.moves``, importlib's lazy modules); ``_MISSING`` when there is no such name."""
    namespace = module.__dict__
    if type(namespace) is not dict:
        return _OPAQUE
    value = namespace.get(name, _MISSING)
    if value is not _MISSING:
        return value
    kind = type(module)
    if kind is not ModuleType:
        for klass in kind.__mro__:
            if klass is ModuleType:
                break
            attributes = klass.__dict__
            if name in attributes or "__getattr__" in attributes or \
                    "__getattribute__" in attributes:
                return _OPAQUE
    if "__getattr__" in namespace:
        return _OPAQUE
    return _MISSING


def _class_attribute(cls: type, name: str) -> Any:
    """What ``getattr(cls, name)`` gives, looked up as ``type.__getattribute__`` does but in the
    dictionaries only; ``_OPAQUE`` when code would decide (a descriptor of its own kind, anything
    but a method in the metaclass, a metaclass ``__getattr__`` or ``__getattribute__``);
    ``_MISSING`` when nothing has it."""
    try:
        meta: type = type(cls)
        custom = [klass for klass in meta.__mro__ if klass is not type and klass is not object]
        for klass in custom:
            attributes = klass.__dict__
            if "__getattribute__" in attributes:
                return _OPAQUE
            found = attributes.get(name, _MISSING)
            if found is not _MISSING and not isinstance(found, _METHODS):
                return _OPAQUE  # a metaclass property (it runs first) or data
        for klass in cls.__mro__:
            found = klass.__dict__.get(name, _MISSING)
            if found is not _MISSING:
                return found if _plain(found) else _OPAQUE
        for klass in meta.__mro__:
            found = klass.__dict__.get(name, _MISSING)
            if found is not _MISSING:
                # A method of the metaclass, bound to the class: judged by its own name.
                return found if isinstance(found, _METHODS) else _OPAQUE
        for klass in custom:
            if "__getattr__" in klass.__dict__:
                return _OPAQUE
    except Exception:
        return _OPAQUE
    return _MISSING


# Methods: looked up on a class, they give themselves or a method bound to it.
_METHODS = (FunctionType, BuiltinFunctionType, classmethod, staticmethod, MethodDescriptorType,
            WrapperDescriptorType, ClassMethodDescriptorType)
# Class attributes whose lookup on the class gives them back (or a method bound to the class):
# methods, properties and the built-in descriptors. Any other descriptor runs code of its own
# when looked up.
_PLAIN = (*_METHODS, MethodType, property, GetSetDescriptorType, MemberDescriptorType)


def _plain(value: Any) -> bool:
    return isinstance(value, _PLAIN) or not hasattr(type(value), "__get__")


def _ours(module: Any) -> bool:
    return isinstance(module, str) and (module == "agentguard" or module.startswith("agentguard."))


def _object_verdict(value: Any) -> str | None:
    """The verdict on one object a name resolved to."""
    try:
        if isinstance(value, type):
            if issubclass(value, (BaseException, Enum)):
                return None  # data, whatever module defines it
            module, qualname = value.__module__, value.__qualname__
        elif isinstance(value, (ModuleType, *_MUTABLE)):
            return STATE
        else:
            key = _callable_name(value)
            if key is None:
                # An object: agentguard's own (its per-thread state, its Guard) are its state,
                # which a pickle's BUILD could rewrite; others are judged by where they are.
                return STATE if _ours(type(value).__module__) else None
            module, qualname = key
            if _ours(module):
                return STATE  # agentguard's functions: switching it off, its state
        if not isinstance(module, str) or not isinstance(qualname, str):
            return None
    except Exception:
        return UNRESOLVED
    return _by_name(module, qualname.split("."), whole_modules=True)


def _callable_name(value: Any, depth: int = 0) -> tuple[Any, Any] | None:
    """(module, qualified name) a function, built-in or method says it has, or ``None``."""
    if depth > MAX_UNWRAP:
        return None
    if isinstance(value, (FunctionType, BuiltinFunctionType)):
        module = value.__module__
        if module is None:
            # A built-in method: named after what it is bound to.
            owner = getattr(value, "__self__", None)
            module = owner.__name__ if isinstance(owner, ModuleType) else \
                owner.__module__ if isinstance(owner, type) else \
                type(owner).__module__ if owner is not None else None
        return module, value.__qualname__
    if isinstance(value, _DESCRIPTORS):
        return value.__objclass__.__module__, value.__qualname__
    if isinstance(value, (classmethod, staticmethod, MethodType)):
        return _callable_name(value.__func__, depth + 1)
    if isinstance(value, functools.partial):
        return _callable_name(value.func, depth + 1)
    return None


# -- whose unpickling --------------------------------------------------------------------------

# Modules whose own unpickling is their transport, not data from outside: multiprocessing's
# connections, queues, pool workers, result handler and spawn bootstrap (and the process pool of
# concurrent.futures, built on them). Refusing one of their unpickles kills a worker or a pool's
# result thread, and the pool hangs.
_TRANSPORTS = ("multiprocessing.", "concurrent.futures.process")
# Frames between an unpickle and whoever asked for it.
_PLUMBING = ("agentguard.", "wrapt.", "pickle", "_compat_pickle", "copyreg")
MAX_FRAMES = 64


def unpickled_by_transport(load: Load | None) -> bool:
    """Whether the unpickling in progress (``load``, or the one raising the current event when no
    load wrapper marked it) was asked for by multiprocessing's own machinery."""
    if load is not None and load.transport is not None:
        return load.transport
    found = False
    try:
        frame: FrameType | None = sys._getframe(1)
        if load is not None:
            frame = _loading_frame(frame, load)
        depth = 0
        while frame is not None and depth < MAX_FRAMES:
            module = frame.f_globals.get("__name__")
            if not isinstance(module, str) or not module.startswith(_PLUMBING):
                found = isinstance(module, str) and module.startswith(_TRANSPORTS)
                break
            frame = frame.f_back
            depth += 1
    except Exception:
        found = False
    if load is not None:
        load.transport = found
    return found


def _loading_frame(frame: FrameType | None, load: Load) -> FrameType | None:
    """The frame of the load wrapper that pushed ``load`` (``None`` when it is out of reach)."""
    patches = sys.modules.get("agentguard.sensors._patches")
    code = getattr(getattr(patches, "_loading", None), "__code__", None)
    depth = 0
    while frame is not None and depth < MAX_FRAMES:
        if frame.f_code is code and frame.f_locals.get("load") is load:
            return frame.f_back
        frame = frame.f_back
        depth += 1
    return None
