"""The wrappers audit events cannot replace: child environments, child pids, model loads, DNS.

An audit hook sees a spawn before it happens but cannot change its environment, and never learns
the child's pid. So the spawn entry points are wrapped with ``wrapt``:

* ``subprocess.Popen._execute_child``: every ``Popen`` (``run``, ``check_output``, asyncio's
  subprocess transport) goes through it with the resolved arguments and ``env``; after it returns
  the instance has its ``pid``. Wrapping it rather than ``__init__`` leaves Popen's own argument
  handling untouched.
* ``os.posix_spawn`` / ``os.posix_spawnp`` (they return the pid) and ``os.execv`` / ``os.execve``,
  which every ``os.exec*`` and ``os.spawn*`` variant ends in (``execv`` becomes ``execve`` with
  the child environment).
* ``os.system``: it takes no environment, and changing ``os.environ`` around it would leak the
  tool's identity into whatever other threads spawn meanwhile. The command runs instead as
  ``export ...; exec /bin/sh -c '<command>' sh``: the shell system() starts sets the variables
  and replaces itself with the shell the command would have had, so the child (same pid, same
  ``$0``, same exit status) has them in its environment and ``os.environ`` never changes.
* ``pickle.load`` / ``pickle.loads`` and, once imported, ``joblib.load`` and ``torch.load``:
  they mark a load in progress, so what a payload does while it is deserialised is attributed
  to the file (the audit events of the load itself come from the hook).
* once imported, loaders that open the model file in native code, where no ``open`` audit event
  is raised: ``safetensors``' ``safe_open`` and its ``load_file`` functions, ONNX Runtime's
  ``InferenceSession`` and llama.cpp's ``Llama``. They report the file as a model load.
* ``asyncio`` ``BaseEventLoop.getaddrinfo``: it resolves in the default executor, where the
  task's context is lost; the wrapper runs the lookup in a copy of the caller's context.
* ``importlib._bootstrap._gcd_import``: ``importlib.import_module`` (however it was imported)
  ends there without the ``import`` audit event the import statement raises.
* threads: a thread starts with an empty context, so what a tool's worker thread does would
  belong to no tool call. ``threading.Thread.start`` (with ``Thread._bootstrap_inner``, which
  runs ``run()`` in the new thread, subclasses included) and ``_thread.start_new_thread`` carry
  the OpenTelemetry context of the code that started them, when that code runs inside
  agentguard's conversation, agent or tool scopes: the thread's connections, processes and files
  are attributed to the same conversation, turn and tool call, and its spans nest under the
  tool's span. Outside those scopes nothing changes. A pool's threads serve many callers: they
  keep no starter's context (the call that happened to start them would own every later task);
  ``concurrent.futures.ThreadPoolExecutor.submit`` and, once imported, the task entry points of
  ``multiprocessing.pool.ThreadPool`` carry each task's submitter's context instead.
  A process pool's worker forked inside a tool call drops the context it inherited with the
  forking thread (``os.register_at_fork``: the fork is a pool's when a pool's spawning function
  is on the stack).

Every wrapper calls straight through when agentguard is not instrumented or the sensor is off.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import contextvars
import importlib
import importlib.util
import inspect
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry import context as otel_context

from agentguard import _state as _agentguard_state
from agentguard import semconv
from agentguard._context import FRAME_KEY, Frame
from agentguard._errors import internal_error
from agentguard._guard import running_tool
from agentguard.sensors import _state
from agentguard.sensors._emit import (
    OperationBlocked,
    add_child_pid,
    current_operation,
    write_span_event,
)
from agentguard.sensors._fspaths import absolute
from agentguard.sensors._hook import report_import, report_model_load, run_handler
from agentguard.sensors._models import Load, current_load
from agentguard.sensors._propagation import child_environment, identity
from agentguard.sensors._tamper import ours

if TYPE_CHECKING:
    from agentguard._guard import Guard

__all__ = ["Spawn", "install", "remove", "wrapper_functions"]

Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


class Spawn:
    """A process spawn in progress on this thread; the hook parks its observation here."""

    __slots__ = ("kind", "observation", "operation")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.observation: Any = None
        self.operation: Any = None


def _sensor_guard() -> Guard | None:
    guard = _agentguard_state.guard
    if guard is None or not guard.config.runtime_sensor:
        return None
    if _state.local.state:
        return None
    return guard


def _with_child_env(guard: Guard, args: tuple[Any, ...], kwargs: dict[str, Any], index: int
                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args``/``kwargs`` with the ``env`` argument (at ``index``) replaced by the child's."""
    if not guard.config.propagate_context:
        return args, kwargs
    op = current_operation()  # the tool running here, even in a context emptied of it
    if op is None:
        return args, kwargs
    try:
        if "env" in kwargs:
            return args, {**kwargs, "env": child_environment(guard, op, kwargs["env"])}
        if len(args) > index:
            env = child_environment(guard, op, args[index])
            return (*args[:index], env, *args[index + 1:]), kwargs
        return args, {**kwargs, "env": child_environment(guard, op, None)}
    except Exception as exc:
        internal_error("sensor child environment", exc)
        return args, kwargs


def _finish_spawn(spawn: Spawn, pid: Any, exc: BaseException | None) -> None:
    """Write the parked process.exec event with the child's pid (or the error) and record it."""
    obs = spawn.observation
    if obs is None:
        return
    try:
        extra: dict[str, Any] = {}
        if isinstance(pid, int):
            extra[semconv.PROCESS_PID] = pid
        if exc is not None and not isinstance(exc, OperationBlocked):
            extra[semconv.ERROR_TYPE] = type(exc).__qualname__
        write_span_event(spawn.operation, obs, extra)
        if isinstance(pid, int):
            add_child_pid(spawn.operation, pid)
    except Exception as err:
        internal_error("sensor spawn record", err)


def _spawning(kind: str, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
              pid_of: Callable[[Any], Any]) -> Any:
    spawn = Spawn(kind)
    spawns = _state.local.spawns
    spawns.append(spawn)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _finish_spawn(spawn, None, exc)
        raise
    finally:
        if spawns and spawns[-1] is spawn:
            spawns.pop()
        elif spawn in spawns:
            spawns.remove(spawn)
    _finish_spawn(spawn, pid_of(result), None)
    return result


# -- processes -----------------------------------------------------------------------------------

def _env_index() -> int:
    """Position of ``env`` among ``Popen._execute_child``'s arguments (after ``self``)."""
    try:
        names = list(inspect.signature(subprocess.Popen._execute_child).parameters)  # type: ignore[attr-defined]
        return names.index("env") - 1
    except (ValueError, TypeError):
        return -1


_POPEN_ENV_INDEX = _env_index()


def _execute_child(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> Any:
    guard = _sensor_guard()
    if guard is None:
        return wrapped(*args, **kwargs)
    if _POPEN_ENV_INDEX >= 0:
        args, kwargs = _with_child_env(guard, args, kwargs, _POPEN_ENV_INDEX)
    return _spawning("popen", wrapped, args, kwargs, lambda _: getattr(instance, "pid", None))


def _posix_spawn(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> Any:
    guard = _sensor_guard()
    if guard is None:
        return wrapped(*args, **kwargs)
    spawns = _state.local.spawns
    if spawns and spawns[-1].kind == "popen":
        return wrapped(*args, **kwargs)  # subprocess's own call: Popen's wrapper handles it
    if len(args) >= 3:
        args, kwargs = _with_child_env(guard, args, kwargs, 2)
    return _spawning("posix_spawn", wrapped, args, kwargs, lambda pid: pid)


def _execv(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    guard = _sensor_guard()
    if guard is None or len(args) != 2 or kwargs:
        return wrapped(*args, **kwargs)
    new_args, _ = _with_child_env(guard, (*args, None), {}, 2)
    if new_args[2] is None:
        return wrapped(*args, **kwargs)
    # execv inherits os.environ; the child environment needs execve.
    return _original("execve")(*new_args)


def _execve(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    guard = _sensor_guard()
    if guard is None or len(args) < 3:
        return wrapped(*args, **kwargs)
    args, kwargs = _with_child_env(guard, args, kwargs, 2)
    return wrapped(*args, **kwargs)


# The shell system() runs commands with (glibc's _PATH_BSHELL).
_SYSTEM_SHELL = "/bin/sh"


def _system_command(guard: Guard, command: Any) -> str | None:
    """``command`` wrapped so its shell carries the tool call's context, or ``None``."""
    if not guard.config.propagate_context:
        return None
    op = current_operation()
    if op is None:
        return None
    text = os.fsdecode(command) if isinstance(command, bytes) else command
    if not isinstance(text, str):
        return None
    exports: list[str] = []
    unset: list[str] = []
    for name, value in identity(guard, op).items():
        if value is None:
            unset.append(name)
        else:
            exports.append(f"{name}={shlex.quote(value)}")
    prefix = ""
    if exports:
        prefix += f"export {' '.join(exports)}; "
    if unset:
        prefix += f"unset {' '.join(unset)}; "
    # "sh" as $0, as system() gives it; exec keeps the pid and the exit status.
    return f"{prefix}exec {_SYSTEM_SHELL} -c {shlex.quote(text)} sh"


def _system(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    guard = _sensor_guard()
    if guard is None or len(args) != 1 or kwargs:
        return wrapped(*args, **kwargs)
    command = args[0]
    try:
        wrapped_command = _system_command(guard, command)
    except Exception as exc:
        internal_error("sensor system environment", exc)
        wrapped_command = None
    if wrapped_command is None or "\0" in wrapped_command:
        return wrapped(*args, **kwargs)
    local = _state.local
    previous = local.system
    # The hook reports the command the tool gave, not the wrapper around it.
    _state.set_local("system", (wrapped_command, command))
    try:
        return wrapped(wrapped_command)
    finally:
        _state.set_local("system", previous)


def _original(name: str) -> Any:
    for owner, attribute, original, _wrapper in _state.patches:
        if owner is os and attribute == name:
            return original
    return getattr(os, name)


# -- model loads ---------------------------------------------------------------------------------

def _file_path(target: Any) -> str | None:
    """The absolute path a load reads from (a path, or an open file's name), spelled as the
    audit hook spells the file it sees opened (``..`` resolved as the kernel walks it), so one
    file is one artifact. A file-like object that is no file of the file system (a ZIP member,
    an in-memory buffer) names none: its ``name`` is not a path."""
    if isinstance(target, (str, bytes, os.PathLike)):
        try:
            return _absolute(os.fsdecode(os.fspath(target)))
        except (TypeError, ValueError):
            return None
    name = getattr(target, "name", None)
    if not isinstance(name, str) or not name:
        return None
    try:
        target.fileno()
    except Exception:  # io.UnsupportedOperation, AttributeError, a closed file
        return None
    return _absolute(name)


def _absolute(path: str) -> str:
    # The audit hook's own reading of a path it sees opened (not os.path.abspath, which drops
    # ".." textually, before the links are followed).
    return absolute(path, path)[0]


def _loading(load: Load, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    local = _state.local
    # What a load does is attributed to it: no repeat may be settled before its handler runs.
    _state.set_local("repeats", None)
    loads = local.loads
    loads.append(load)
    try:
        return wrapped(*args, **kwargs)
    finally:
        if loads and loads[-1] is load:
            loads.pop()
        elif load in loads:
            loads.remove(load)


def _pickle_load(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> Any:
    if _sensor_guard() is None:
        return wrapped(*args, **kwargs)
    target = args[0] if args else kwargs.get("file")
    return _loading(Load(_file_path(target), "pickle", "pickle.load"), wrapped, args, kwargs)


def _pickle_loads(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> Any:
    if _sensor_guard() is None:
        return wrapped(*args, **kwargs)
    return _loading(Load(None, "pickle", "pickle.loads"), wrapped, args, kwargs)


def _model_loader(format: str, source: str, keyword: str) -> Wrapper:
    """A wrapper for a library's model loader (``joblib.load``, ``torch.load``)."""

    def load_model(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> Any:
        guard = _sensor_guard()
        if guard is None:
            return wrapped(*args, **kwargs)
        path = _file_path(args[0] if args else kwargs.get(keyword))
        load = Load(path, format, source)
        if path is not None and os.path.isfile(path):
            run_handler(guard, source, report_model_load, path, format, source)
            load.reported = True
        return _loading(load, wrapped, args, kwargs)

    load_model.__name__ = f"load_model_{format}"
    return load_model


def _native_loader(format: str, source: str, keyword: str) -> Wrapper:
    """A wrapper for a loader that opens the model file in native code (the hook sees no
    ``open``): ``safetensors.safe_open``, ``onnxruntime.InferenceSession``, ``llama_cpp.Llama``.

    Only a path names a file: ONNX Runtime also takes the model's bytes, which are left alone.
    """

    def load_native_model(wrapped: Any, instance: Any, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> Any:
        guard = _sensor_guard()
        if guard is None:
            return wrapped(*args, **kwargs)
        target = args[0] if args else kwargs.get(keyword)
        path = _file_path(target) if isinstance(target, (str, os.PathLike)) else None
        if path is None:
            return wrapped(*args, **kwargs)
        current = current_load()
        if current is not None and current.reported and current.path == path:
            return wrapped(*args, **kwargs)  # safe_open inside load_file: one load, reported
        load = Load(path, format, source)
        if os.path.isfile(path):
            run_handler(guard, source, report_model_load, path, format, source)
            load.reported = True
        return _loading(load, wrapped, args, kwargs)

    load_native_model.__name__ = f"load_native_model_{format}"
    return load_native_model


# -- thread pools ---------------------------------------------------------------------------------

# Modules whose threads serve a pool: they never keep their starter's context (the first caller
# of a shared pool would own every later task); each task runs in its submitter's instead.
_POOL_MODULES = frozenset({"concurrent.futures.thread", "multiprocessing.pool"})


def _pool_task(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> Any:
    """``multiprocessing.pool.ThreadPool``'s ``apply_async``, ``_map_async``, ``imap`` and
    ``imap_unordered`` (``apply``, ``map``, ``starmap`` and their variants end in them): the task
    runs in the caller's context. A process pool pickles its tasks and is left alone."""
    if not isinstance(instance, _thread_pool_class()):
        return wrapped(*args, **kwargs)
    if not args and callable(kwargs.get("func")):
        context = _scoped_context(kwargs["func"])
        if context is not None:
            return wrapped(**{**kwargs, "func": _in_context(context, kwargs["func"])})
    return _carry_context(wrapped, instance, args, kwargs)


# Forked pool workers: the child's only thread is a copy of the one that forked, context and
# all, so a process pool started inside a tool call would run every later task, whoever
# submitted it, as that call (and under its tool-scoped rules). Where the fork comes from a
# pool starting a worker, the child drops the inherited context. A process a tool forks itself
# keeps it, like any child of the tool.
_POOL_SPAWNERS = frozenset({("concurrent.futures.process", "_spawn_process"),
                            ("concurrent.futures.process", "_adjust_process_count"),
                            ("multiprocessing.pool", "_repopulate_pool_static")})
_forking = threading.local()


def _before_fork() -> None:
    if not _state.patching:
        return
    try:
        frame: FrameType | None = sys._getframe(1)
        for _ in range(16):
            if frame is None:
                break
            if (frame.f_globals.get("__name__"), frame.f_code.co_name) in _POOL_SPAWNERS:
                _forking.pool = True
                return
            frame = frame.f_back
    except Exception as exc:  # never in the way of a fork
        internal_error("sensor fork", exc)


def _after_fork_in_parent() -> None:
    _forking.__dict__.pop("pool", None)


def _after_fork_in_child() -> None:
    if _forking.__dict__.pop("pool", None):
        try:
            otel_context.attach(otel_context.Context())
        except Exception as exc:
            internal_error("sensor fork", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def _thread_pool_class() -> Any:
    module = sys.modules.get("multiprocessing.pool")
    return getattr(module, "ThreadPool", ()) if module is not None else ()


# safetensors opens and maps the file in Rust. safe_open is what every load goes through; each
# framework module binds its own name for it at import (wrapped there too, when it was imported
# before the sensor started) and has its own load_file (the loader named in the event).
_SAFE_OPEN = _native_loader("safetensors", "safetensors.safe_open", "filename")
_SAFETENSORS_MODULES = ("numpy", "torch", "flax", "tensorflow", "paddle", "mlx")

# Wrapped when imported: module -> (owner inside the module, "" for the module itself, attribute,
# wrapper).
_LOADERS: dict[str, tuple[tuple[str, str, Wrapper], ...]] = {
    # Each library's public entry point for reading a model file.
    "joblib": (("", "load", _model_loader("joblib", "joblib.load", "filename")),),
    "torch": (("", "load", _model_loader("pytorch", "torch.load", "f")),),
    "safetensors": (("", "safe_open", _SAFE_OPEN),),
    **{f"safetensors.{name}": (
        ("", "load_file", _native_loader("safetensors", f"safetensors.{name}.load_file",
                                         "filename")),
        ("", "safe_open", _SAFE_OPEN)) for name in _SAFETENSORS_MODULES},
    # Classes: their __init__ (the class itself stays a class for isinstance and subclasses).
    "onnxruntime": (("InferenceSession", "__init__",
                     _native_loader("onnx", "onnxruntime.InferenceSession", "path_or_bytes")),),
    "llama_cpp": (("Llama", "__init__", _native_loader("gguf", "llama_cpp.Llama", "model_path")),),
    "multiprocessing.pool": tuple(("Pool", name, _pool_task)
                                  for name in ("apply_async", "_map_async", "imap",
                                               "imap_unordered")),
}


# -- asyncio DNS ---------------------------------------------------------------------------------

async def _loop_getaddrinfo(wrapped: Any, instance: Any, args: tuple[Any, ...],
                            kwargs: dict[str, Any]) -> Any:
    if _sensor_guard() is None or getattr(instance, "_debug", False) or len(args) != 2 or \
            set(kwargs) - {"family", "type", "proto", "flags"}:
        return await wrapped(*args, **kwargs)
    host, port = args
    context = contextvars.copy_context()
    # As BaseEventLoop.getaddrinfo does, with the caller's context carried into the executor.
    return await instance.run_in_executor(
        None, context.run, socket.getaddrinfo, host, port, kwargs.get("family", 0),
        kwargs.get("type", 0), kwargs.get("proto", 0), kwargs.get("flags", 0))


# -- imports -------------------------------------------------------------------------------------

def _gcd_import(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> Any:
    name = args[0] if args else kwargs.get("name")
    if not isinstance(name, str) or name in sys.modules:
        return wrapped(*args, **kwargs)
    guard = _sensor_guard()
    if guard is None:
        return wrapped(*args, **kwargs)
    level = args[2] if len(args) > 2 else kwargs.get("level", 0)
    if level:
        package = args[1] if len(args) > 1 else kwargs.get("package")
        try:
            name = importlib.util.resolve_name("." * level + name, package)
        except (ImportError, ValueError, TypeError):
            return wrapped(*args, **kwargs)
    run_handler(guard, "import", report_import, name)
    return wrapped(*args, **kwargs)


# -- threads -------------------------------------------------------------------------------------

# The attribute on a Thread that carries its starter's context to ``_bootstrap_inner``.
_THREAD_CONTEXT = "_agentguard_context"


def _scoped_context(function: Any) -> Any:
    """The current OpenTelemetry context when the code runs inside an agentguard scope
    (conversation, agent or tool), else ``None``; also ``None`` when ``function``, what the new
    thread runs, is agentguard's own (its export thread is its own, whoever starts it)."""
    if _sensor_guard() is None:
        return None
    context = otel_context.get_current()
    if not isinstance(context.get(FRAME_KEY), Frame):
        # A context emptied inside a tool (``contextvars.Context().run(thread.start)``): the new
        # thread is still the tool's.
        op = running_tool()
        if op is None:
            return None
        context = op.context
    if ours(getattr(function, "__module__", None)):
        return None
    return context


def _thread_start(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> Any:
    function = getattr(instance, "_target", None) or instance
    context = _scoped_context(function)
    if context is not None and getattr(function, "__module__", None) not in _POOL_MODULES:
        try:
            setattr(instance, _THREAD_CONTEXT, context)
        except Exception as exc:  # a Thread subclass with __slots__
            internal_error("sensor thread context", exc)
    return wrapped(*args, **kwargs)


def _thread_bootstrap(wrapped: Any, instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
    context = instance.__dict__.pop(_THREAD_CONTEXT, None) \
        if hasattr(instance, "__dict__") else None
    if context is None:
        return wrapped(*args, **kwargs)
    token = otel_context.attach(context)
    try:
        return wrapped(*args, **kwargs)
    finally:
        otel_context.detach(token)


def _in_context(context: Any, function: Any) -> Any:
    """``function`` run with ``context`` attached (and detached after)."""

    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(context)
        try:
            return function(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run_in_context


def _carry_context(wrapped: Any, instance: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
    """``_thread.start_new_thread(function, ...)`` and ``ThreadPoolExecutor.submit(function,
    ...)``: ``function`` runs in the caller's context."""
    if not args or not callable(args[0]):
        return wrapped(*args, **kwargs)
    context = _scoped_context(args[0])
    if context is None:
        return wrapped(*args, **kwargs)
    return wrapped(_in_context(context, args[0]), *args[1:], **kwargs)


# -- bookkeeping ---------------------------------------------------------------------------------

def _wrap(owner: Any, attribute: str, wrapper: Wrapper) -> None:
    for patched_owner, patched_attribute, _, _ in _state.patches:
        if patched_owner is owner and patched_attribute == attribute:
            return
    original = owner.__dict__.get(attribute) if attribute in owner.__dict__ else \
        getattr(owner, attribute, None)
    if original is None:
        return
    if any(original is wrapped for _, _, _, wrapped in _state.patches):
        return  # a name bound to one of ours already (``from safetensors import safe_open``)
    wrapped = wrapt.FunctionWrapper(original, wrapper)
    setattr(owner, attribute, wrapped)
    _state.patches.append((owner, attribute, original, wrapped))


def _patch_loader(module: Any) -> None:
    name = getattr(module, "__name__", "")
    entries = _LOADERS.get(name)
    if entries is None:
        return
    with _state.patch_lock:
        if not _state.patching:
            return
        for owner_name, attribute, wrapper in entries:
            try:
                owner = getattr(module, owner_name) if owner_name else module
                _wrap(owner, attribute, wrapper)
            except Exception as exc:
                internal_error(f"sensor patch {name}.{attribute}", exc)


def install() -> None:
    """Put the wrappers in place (idempotent; called under agentguard's state lock)."""
    import asyncio.base_events
    import pickle

    with _state.patch_lock:
        _install(asyncio.base_events, pickle)
    for target in _LOADERS:
        if target in _state.import_hooks:
            module = sys.modules.get(target)
            if module is not None:
                _patch_loader(module)
            continue
        _state.import_hooks.add(target)
        # Registered once for good (wrapt cannot remove one); it patches only while the sensor
        # runs, and at once when the library is already imported. Outside patch_lock: wrapt
        # calls the hook with its own lock held.
        wrapt.register_post_import_hook(_patch_loader, target)


def _install(base_events: Any, pickle: Any) -> None:
    _state.patching = True
    _state.reported_patches.clear()
    targets: list[tuple[Any, str, Wrapper]] = [
        (subprocess.Popen, "_execute_child", _execute_child),
        (pickle, "load", _pickle_load),
        (pickle, "loads", _pickle_loads),
        (base_events.BaseEventLoop, "getaddrinfo", _loop_getaddrinfo),
        (importlib._bootstrap, "_gcd_import", _gcd_import),
    ]
    # A thread started inside agentguard's scopes keeps its starter's context.
    targets.extend([
        (threading.Thread, "start", _thread_start),
        (threading.Thread, "_bootstrap_inner", _thread_bootstrap),
        (_thread, "start_new_thread", _carry_context),
        (concurrent.futures.ThreadPoolExecutor, "submit", _carry_context),
    ])
    for name in ("posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            targets.append((os, name, _posix_spawn))
    if hasattr(os, "execv"):
        targets.append((os, "execv", _execv))
    if hasattr(os, "execve"):
        targets.append((os, "execve", _execve))
    if hasattr(os, "system") and os.name == "posix":
        targets.append((os, "system", _system))
    for owner, attribute, wrapper in targets:
        try:
            _wrap(owner, attribute, wrapper)
        except Exception as exc:
            internal_error(f"sensor patch {attribute}", exc)


def remove() -> None:
    """Restore every wrapped attribute that still holds our wrapper.

    A wrapper someone stacked on top of ours stays; ours underneath calls straight through.
    """
    with _state.patch_lock:
        _state.patching = False
        for owner, attribute, original, wrapped in reversed(_state.patches):
            try:
                if owner.__dict__.get(attribute) is wrapped:
                    setattr(owner, attribute, original)
            except Exception as exc:
                internal_error(f"sensor unpatch {attribute}", exc)
        _state.patches.clear()


def wrapper_functions() -> frozenset[Any]:
    """The wrapper functions (their code must not be replaced while they run)."""
    loaders = [wrapper for entries in _LOADERS.values() for _, _, wrapper in entries]
    return frozenset({_execute_child, _posix_spawn, _execv, _execve, _system, _pickle_load,
                      _pickle_loads, _loop_getaddrinfo, _gcd_import, _thread_start,
                      _thread_bootstrap, _carry_context, *loaders})
