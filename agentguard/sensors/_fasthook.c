/* The runtime sensor's audit hook entry point in C: settles the events nobody asked for.
 *
 * CPython spends about as much entering a Python-level audit hook as the hook itself does: it
 * builds a str of the event name, iterates the hook list, looks up ``__cantrace__`` and calls
 * the function, for every audit event in the process. A hook added with ``PySys_AddAuditHook``
 * is called with the C string and the argument tuple instead. This one returns at once for
 * events the sensor has no handler for, and for the commonest events it would ignore anyway:
 *
 *   - ``open`` of a file for reading that is bytecode or source (``.py``/``.pyc``), or whose
 *     path is in the set of paths already classified as ordinary (the set the Python handler
 *     fills);
 *   - ``socket.getaddrinfo``/``gethostbyname(_ex)`` of a literal IP address (nothing resolved);
 *   - ``import`` of a module whose top-level package was already seen (the set the Python
 *     handler fills), and the second ``import`` event of an extension module;
 *   - ``object.__setattr__`` of anything but ``__code__``, ``__defaults__``, ``__kwdefaults__``;
 *   - a file open or ``socket.connect`` that repeats one already on the tool call's span, in the
 *     same OpenTelemetry context, while no pipeline stage judges events (see ``repeat`` below):
 *     only the count is passed to Python.
 *
 * Each of those is exactly the test the Python hook makes first, so behaviour is the same in
 * both modes. Everything else with a handler is passed to the Python hook, with tracing off as
 * CPython does for Python hooks; an exception it raises (the sensor's PermissionError) aborts
 * the audited operation. While the sensor is inactive (agentguard not instrumented, or the
 * sensor off) only the install probe and the control event reach Python.
 *
 * Audit hooks added this way are process-wide; events of other interpreters are ignored.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_EVENTS 64
#define MAX_HOST 256

/* Kinds of event the C side has a fast path for. */
enum kind { K_FORWARD = 0, K_OPEN, K_LOOKUP, K_IMPORT, K_SETATTR, K_CONNECT, K_ALWAYS };

typedef struct {
    const char *name; /* UTF-8 of ``object``, owned by it */
    PyObject *object; /* the event name as a str, passed to the Python hook */
    enum kind kind;
} event_entry;

static event_entry events[MAX_EVENTS];
static int n_events;
static PyObject *callback;      /* the Python hook: callback(event, args) */
static PyObject *ordinary;      /* set of absolute paths whose reads are not events */
static PyObject *modules_seen;  /* set of top-level module names already reported or loaded */
static PyObject *code_attributes; /* frozenset of the attribute names worth forwarding */
static long write_flags;
static int active;
static int added;
static PyInterpreterState *owner; /* the interpreter that installed the hook */
static unsigned long long n_forwarded;
static unsigned long long n_filtered;
static unsigned long long n_repeats;

/* Repeats (configured by ``repeats()``; all NULL until then). The table itself stays in Python,
   in the sensor's thread-local ``local.repeats``: (OpenTelemetry context, guard, {raw arguments:
   (span, SpanState)}), so whatever empties it there (a model load starting, a fork) empties it
   for this hook too. */
static PyObject *repeat_local;   /* the sensor's threading.local */
static PyObject *guard_holder;   /* the module whose ``guard`` is the active Guard */
static PyObject *context_var;    /* the ContextVar holding OpenTelemetry's current context */
static PyObject *repeat_count;   /* count(event, guard, (span, state)) */
static PyObject *str_state;
static PyObject *str_repeats;
static PyObject *str_guard;
static PyObject *str_has_stages;

static const char CONTROL_EVENT[] = "agentguard.sensors.fasthook";

static const event_entry *
find_event(const char *event)
{
    /* A first-character test rejects most names before strcmp runs. */
    char first = event[0];
    for (int i = 0; i < n_events; i++) {
        const event_entry *entry = &events[i];
        if (entry->name[0] == first && strcmp(entry->name, event) == 0) {
            return entry;
        }
    }
    return NULL;
}

/* 1 when an ``open`` is a read the Python hook would settle at once, 0 to forward. */
static int
ordinary_read(PyObject *args)
{
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) < 3) {
        return 0;
    }
    PyObject *path = PyTuple_GET_ITEM(args, 0);
    PyObject *flags = PyTuple_GET_ITEM(args, 2);
    if (!PyUnicode_CheckExact(path) || !PyLong_CheckExact(flags)) {
        return 0;
    }
    int overflow = 0;
    long value = PyLong_AsLongAndOverflow(flags, &overflow);
    if (overflow || (value == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (value & write_flags) {
        return 0;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(path);
    int kind = PyUnicode_KIND(path);
    const void *data = PyUnicode_DATA(path);
    /* ``path.endswith((".pyc", ".py"))`` */
    if (length >= 3 && PyUnicode_READ(kind, data, length - 3) == '.' &&
        PyUnicode_READ(kind, data, length - 2) == 'p' &&
        PyUnicode_READ(kind, data, length - 1) == 'y') {
        return 1;
    }
    if (length >= 4 && PyUnicode_READ(kind, data, length - 4) == '.' &&
        PyUnicode_READ(kind, data, length - 3) == 'p' &&
        PyUnicode_READ(kind, data, length - 2) == 'y' &&
        PyUnicode_READ(kind, data, length - 1) == 'c') {
        return 1;
    }
    if (ordinary == NULL) {
        return 0;
    }
    int found = PySet_Contains(ordinary, path);
    if (found < 0) {
        PyErr_Clear();
        return 0;
    }
    return found;
}

/* 1 when a lookup is of a literal address (or of nothing): nothing is resolved. */
static int
literal_lookup(PyObject *args)
{
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) < 1) {
        return 0;
    }
    PyObject *host = PyTuple_GET_ITEM(args, 0);
    if (host == Py_None) {
        return 1;
    }
    if (!PyUnicode_CheckExact(host)) {
        return 0;
    }
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(host, &size);
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (size == 0) {
        return 1;
    }
    if (size >= MAX_HOST || (Py_ssize_t)strlen(text) != size) {
        return 0;
    }
    unsigned char address[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, text, address) == 1) {
        return 1;
    }
    const char *colon = strchr(text, ':');
    if (colon == NULL) {
        return 0;
    }
    /* An IPv6 address with a zone (``fe80::1%eth0``): the address before the ``%``. */
    char buffer[MAX_HOST];
    const char *percent = strchr(text, '%');
    size_t length = percent != NULL ? (size_t)(percent - text) : (size_t)size;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    return inet_pton(AF_INET6, buffer, address) == 1;
}

/* 1 when an ``import`` needs no report: an extension's second event, or a package seen. */
static int
known_import(PyObject *args)
{
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) < 1) {
        return 0;
    }
    if (PyTuple_GET_SIZE(args) > 2 && PyTuple_GET_ITEM(args, 2) == Py_None) {
        return 1;
    }
    PyObject *name = PyTuple_GET_ITEM(args, 0);
    if (!PyUnicode_CheckExact(name) || modules_seen == NULL) {
        return 0;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(name);
    Py_ssize_t dot = PyUnicode_FindChar(name, '.', 0, length, 1);
    if (dot == -2) {
        PyErr_Clear();
        return 0;
    }
    int found;
    if (dot < 0) {
        found = PySet_Contains(modules_seen, name);
    }
    else {
        PyObject *top = PyUnicode_Substring(name, 0, dot);
        if (top == NULL) {
            PyErr_Clear();
            return 0;
        }
        found = PySet_Contains(modules_seen, top);
        Py_DECREF(top);
    }
    if (found < 0) {
        PyErr_Clear();
        return 0;
    }
    return found;
}

/* 1 when an ``object.__setattr__`` does not touch code, defaults or keyword defaults. */
static int
harmless_setattr(PyObject *args)
{
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) < 2 || code_attributes == NULL) {
        return 0;
    }
    PyObject *attribute = PyTuple_GET_ITEM(args, 1);
    if (!PyUnicode_Check(attribute)) {
        return 0;
    }
    int found = PySet_Contains(code_attributes, attribute);
    if (found < 0) {
        PyErr_Clear();
        return 0;
    }
    return !found;
}

/* Calls ``target(*stack)`` as CPython calls a Python audit hook (tracing off); -1 on error. */
static int
call_python(PyObject *target, PyObject *const *stack, Py_ssize_t nargs)
{
    /* Held across the call: the callable must outlive a concurrent replacement. */
    Py_INCREF(target);
#if PY_VERSION_HEX >= 0x030B0000
    PyThreadState *tstate = PyThreadState_Get();
    PyThreadState_EnterTracing(tstate);
#endif
    PyObject *result = PyObject_Vectorcall(target, stack, nargs, NULL);
#if PY_VERSION_HEX >= 0x030B0000
    PyThreadState_LeaveTracing(tstate);
#endif
    Py_DECREF(target);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* The entry of the repeat table ``args`` hits (a new reference) with the guard it belongs to
   (a new reference in ``*owner_guard``), or NULL to pass the event to Python. Makes exactly the
   checks the Python hook makes before its own table lookup: an active guard, this thread not
   busy in the sensor nor one of agentguard's own, a table filled with this guard in the current
   context, and no pipeline stage (then every occurrence is judged). Never leaves an exception
   set. */
static PyObject *
repeat_hit(enum kind kind, PyObject *args, PyObject **owner_guard)
{
    if (repeat_local == NULL || !PyTuple_CheckExact(args)) {
        return NULL;
    }
    PyObject *key;
    if (kind == K_OPEN) {
        /* ``(path, mode, flags)`` itself, for an absolute str path and int flags: equal to the
           key the Python side remembers. */
        if (PyTuple_GET_SIZE(args) != 3) {
            return NULL;
        }
        PyObject *path = PyTuple_GET_ITEM(args, 0);
        if (!PyUnicode_CheckExact(path) || PyUnicode_GET_LENGTH(path) == 0 ||
            PyUnicode_READ_CHAR(path, 0) != '/' || !PyLong_CheckExact(PyTuple_GET_ITEM(args, 2))) {
            return NULL;
        }
        key = args;
    }
    else {
        /* The address of an IP connection; a Unix socket's str path goes to its handler. */
        if (PyTuple_GET_SIZE(args) < 2 || !PyTuple_CheckExact(PyTuple_GET_ITEM(args, 1))) {
            return NULL;
        }
        key = PyTuple_GET_ITEM(args, 1);
    }
    PyObject *holder = PyModule_GetDict(guard_holder);
    PyObject *guard = holder != NULL ? PyDict_GetItemWithError(holder, str_guard) : NULL;
    if (guard == NULL || guard == Py_None) {
        PyErr_Clear();
        return NULL;
    }
    Py_INCREF(guard);
    PyObject *hit = NULL;
    PyObject *table = NULL;
    PyObject *context = NULL;
    PyObject *state = PyObject_GetAttr(repeat_local, str_state);
    if (state == NULL || !PyLong_CheckExact(state) || PyLong_AsLong(state) != 0) {
        goto done; /* the sensor is running on this thread, or the thread is agentguard's own */
    }
    PyObject *repeats = PyObject_GetAttr(repeat_local, str_repeats);
    if (repeats == NULL) {
        goto done;
    }
    if (PyTuple_CheckExact(repeats) && PyTuple_GET_SIZE(repeats) == 3 &&
        PyTuple_GET_ITEM(repeats, 1) == guard && PyDict_CheckExact(PyTuple_GET_ITEM(repeats, 2))) {
        table = PyTuple_GET_ITEM(repeats, 2);
        Py_INCREF(table);
        context = PyTuple_GET_ITEM(repeats, 0);
        Py_INCREF(context);
    }
    Py_DECREF(repeats);
    if (table == NULL) {
        goto done;
    }
    PyObject *has_stages = PyObject_GetAttr(guard, str_has_stages);
    int judged = has_stages != NULL ? PyObject_IsTrue(has_stages) : -1;
    Py_XDECREF(has_stages);
    if (judged != 0) {
        goto done;
    }
    PyObject *current = NULL;
    if (PyContextVar_Get(context_var, NULL, &current) < 0 || current != context) {
        Py_XDECREF(current);
        goto done;
    }
    Py_DECREF(current);
    hit = PyDict_GetItemWithError(table, key); /* an unhashable address sets TypeError */
    Py_XINCREF(hit);
done:
    PyErr_Clear();
    Py_XDECREF(state);
    Py_XDECREF(table);
    Py_XDECREF(context);
    if (hit == NULL) {
        Py_DECREF(guard);
        return NULL;
    }
    *owner_guard = guard;
    return hit;
}

static int
hook(const char *event, PyObject *args, void *data)
{
    (void)data;
    const event_entry *entry = find_event(event);
    if (entry == NULL || callback == NULL) {
        return 0;
    }
    if (entry->kind != K_ALWAYS) {
        if (!active) {
            return 0;
        }
        int settled = 0;
        switch (entry->kind) {
        case K_OPEN:
            settled = ordinary_read(args);
            break;
        case K_LOOKUP:
            settled = literal_lookup(args);
            break;
        case K_IMPORT:
            settled = known_import(args);
            break;
        case K_SETATTR:
            settled = harmless_setattr(args);
            break;
        default:
            break;
        }
        if (settled) {
            n_filtered++;
            return 0;
        }
    }
    if (PyInterpreterState_Get() != owner) {
        return 0;
    }
    if (entry->kind == K_OPEN || entry->kind == K_CONNECT) {
        PyObject *guard = NULL;
        /* Tracing off as for the hook: the first read of ``local`` on a thread runs its
           ``__init__``. */
#if PY_VERSION_HEX >= 0x030B0000
        PyThreadState *tstate = PyThreadState_Get();
        PyThreadState_EnterTracing(tstate);
#endif
        PyObject *hit = repeat_hit(entry->kind, args, &guard);
#if PY_VERSION_HEX >= 0x030B0000
        PyThreadState_LeaveTracing(tstate);
#endif
        if (hit != NULL) {
            /* Only the count on the span is left to do: no handler, no parsing. */
            n_repeats++;
            PyObject *stack[3] = {entry->object, guard, hit};
            int status = call_python(repeat_count, stack, 3);
            Py_DECREF(hit);
            Py_DECREF(guard);
            return status;
        }
    }
    n_forwarded++;
    PyObject *stack[2] = {entry->object, args};
    return call_python(callback, stack, 2);
}

static void
clear_events(void)
{
    for (int i = 0; i < n_events; i++) {
        Py_CLEAR(events[i].object);
        events[i].name = NULL;
    }
    n_events = 0;
}

static enum kind
kind_of(const char *name)
{
    if (strcmp(name, "open") == 0) {
        return K_OPEN;
    }
    if (strcmp(name, "socket.getaddrinfo") == 0 || strcmp(name, "socket.gethostbyname") == 0 ||
        strcmp(name, "socket.gethostbyname_ex") == 0) {
        return K_LOOKUP;
    }
    if (strcmp(name, "import") == 0) {
        return K_IMPORT;
    }
    if (strcmp(name, "object.__setattr__") == 0) {
        return K_SETATTR;
    }
    if (strcmp(name, "socket.connect") == 0) {
        return K_CONNECT;
    }
    return K_FORWARD;
}

PyDoc_STRVAR(install_doc,
"install(callback, events, always, ordinary, modules_seen, code_attributes, write_flags) -> bool\n"
"\n"
"Route audit events to ``callback(event, args)`` through the C hook. ``events`` are the names\n"
"with a handler, ``always`` those passed on even while inactive. Adds the hook to the\n"
"interpreter the first time (returns True then); later calls only replace the configuration.");

static PyObject *
install(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "install() takes exactly 7 arguments");
        return NULL;
    }
    PyObject *function = args[0];
    PyObject *names = args[1];
    PyObject *always = args[2];
    if (!PyCallable_Check(function)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    if (!PyAnySet_Check(args[3]) || !PyAnySet_Check(args[4]) || !PyAnySet_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "ordinary, modules_seen and code_attributes must be sets");
        return NULL;
    }
    long flags = PyLong_AsLong(args[6]);
    if (flags == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(names, "events must be a sequence of str");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    if (count > MAX_EVENTS) {
        Py_DECREF(sequence);
        PyErr_Format(PyExc_ValueError, "at most %d events", MAX_EVENTS);
        return NULL;
    }
    event_entry fresh[MAX_EVENTS];
    int filled = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PySequence_Fast_GET_ITEM(sequence, i);
        const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        int keep = text != NULL && text[0] != '\0';
        int is_always = keep ? PySequence_Contains(always, name) : 0;
        if (!keep || is_always < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "event names must be non-empty str");
            }
            for (int j = 0; j < filled; j++) {
                Py_DECREF(fresh[j].object);
            }
            Py_DECREF(sequence);
            return NULL;
        }
        Py_INCREF(name);
        fresh[filled].object = name;
        fresh[filled].name = text;
        fresh[filled].kind = is_always ? K_ALWAYS : kind_of(text);
        filled++;
    }
    Py_DECREF(sequence);

    clear_events();
    memcpy(events, fresh, sizeof(event_entry) * (size_t)filled);
    n_events = filled;
    Py_INCREF(function);
    Py_XSETREF(callback, function);
    Py_INCREF(args[3]);
    Py_XSETREF(ordinary, args[3]);
    Py_INCREF(args[4]);
    Py_XSETREF(modules_seen, args[4]);
    Py_INCREF(args[5]);
    Py_XSETREF(code_attributes, args[5]);
    write_flags = flags;

    if (added) {
        Py_RETURN_FALSE;
    }
    owner = PyInterpreterState_Get();
    if (PySys_AddAuditHook(hook, NULL) < 0) {
        return NULL;
    }
    /* PySys_AddAuditHook also returns 0 when an existing hook refused the addition; the
       caller's probe event tells. */
    added = 1;
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(refused_doc,
"refused()\n"
"\n"
"Record that the probe did not come back: the hook was not added, the next install() adds it.");

static PyObject *
refused(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    added = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_active_doc,
"set_active(flag)\n"
"\n"
"Pass events to the Python hook (True) or only the probe and this call's own event (False).\n"
"Raises the audit event ``agentguard.sensors.fasthook`` with ``(flag,)`` first, so the sensor\n"
"sees (and may refuse) code that switches it off.");

static PyObject *
set_active(PyObject *module, PyObject *flag)
{
    (void)module;
    int value = PyObject_IsTrue(flag);
    if (value < 0) {
        return NULL;
    }
    if (PySys_Audit(CONTROL_EVENT, "(O)", value ? Py_True : Py_False) < 0) {
        return NULL;
    }
    active = value;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(repeats_doc,
"repeats(local, holder, variable, count)\n"
"\n"
"Settle repeated file opens and connections in C. ``local.repeats`` is the sensor's per-thread\n"
"table ``(context, guard, {raw arguments: (span, state)})`` and ``local.state`` its busy flag,\n"
"``holder.guard`` the active Guard, ``variable`` the ContextVar holding OpenTelemetry's current\n"
"context; a hit calls ``count(event, guard, (span, state))`` instead of the hook.");

static PyObject *
repeats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "repeats() takes exactly 4 arguments");
        return NULL;
    }
    if (!PyModule_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "holder must be a module");
        return NULL;
    }
    if (!PyContextVar_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "variable must be a contextvars.ContextVar");
        return NULL;
    }
    if (!PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "count must be callable");
        return NULL;
    }
    if (str_state == NULL) {
        str_state = PyUnicode_InternFromString("state");
        str_repeats = PyUnicode_InternFromString("repeats");
        str_guard = PyUnicode_InternFromString("guard");
        str_has_stages = PyUnicode_InternFromString("has_stages");
        if (str_state == NULL || str_repeats == NULL || str_guard == NULL ||
            str_has_stages == NULL) {
            Py_CLEAR(str_state);
            Py_CLEAR(str_repeats);
            Py_CLEAR(str_guard);
            Py_CLEAR(str_has_stages);
            return NULL;
        }
    }
    /* Announced like set_active(): pointing the hook at another table or counter is tampering
       unless agentguard does it. */
    if (PySys_Audit(CONTROL_EVENT, "(s)", "repeats") < 0) {
        return NULL;
    }
    Py_INCREF(args[3]);
    Py_XSETREF(repeat_count, args[3]);
    Py_INCREF(args[2]);
    Py_XSETREF(context_var, args[2]);
    Py_INCREF(args[1]);
    Py_XSETREF(guard_holder, args[1]);
    Py_INCREF(args[0]);
    Py_XSETREF(repeat_local, args[0]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stats_doc,
"stats() -> dict\n"
"\n"
"Whether the hook was added and is active, and how many events it passed on to Python or\n"
"settled itself, and of those how many were repeats only counted (events without a handler are\n"
"not counted).");

static PyObject *
stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:O,s:O,s:K,s:K,s:K}", "added", added ? Py_True : Py_False, "active",
                         active ? Py_True : Py_False, "forwarded", n_forwarded, "filtered",
                         n_filtered + n_repeats, "repeats", n_repeats);
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {"refused", refused, METH_NOARGS, refused_doc},
    {"set_active", set_active, METH_O, set_active_doc},
    {"repeats", (PyCFunction)(void (*)(void))repeats, METH_FASTCALL, repeats_doc},
    {"stats", stats, METH_NOARGS, stats_doc},
    {NULL, NULL, 0, NULL},
};

/* Single-phase initialisation: the hook and its configuration are process-wide, so the module
   is not offered to isolated subinterpreters. */
static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "agentguard.sensors._fasthook",
    .m_doc = "The runtime sensor's audit hook entry point in C: filters events, calls Python "
             "for the rest.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__fasthook(void)
{
    PyObject *module = PyModule_Create(&definition);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "CONTROL_EVENT", CONTROL_EVENT) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
