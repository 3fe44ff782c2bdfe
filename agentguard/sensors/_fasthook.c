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
 *     same OpenTelemetry context, while no pipeline stage judges events (see ``repeat_hit``
 *     below): it is counted in C, and the counts reach the span when ``flush()`` hands them to
 *     Python (agentguard calls it just before any of its spans ends).
 *
 * Each of those is exactly the test the Python hook makes first, so behaviour is the same in
 * both modes. Everything else with a handler is passed to the Python hook, with tracing off as
 * CPython does for Python hooks; an exception it raises (the sensor's PermissionError) aborts
 * the audited operation. While the sensor is inactive (agentguard not instrumented, or the
 * sensor off) only the install probe and the control event reach Python. ``install()`` after the
 * first, ``set_active()`` and ``repeats()`` raise the control event before they change anything,
 * so the sensor sees (and may refuse) code that reconfigures the hook.
 *
 * Audit hooks added this way are process-wide; events of other interpreters are ignored.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_EVENTS 64
#define MAX_HOST 256
/* Spans with repeats counted in C and not yet handed to Python; past this, repeats go to the
   Python hook (which counts them itself) until the next flush. */
#define MAX_PENDING 32

/* Kinds of event the C side has a fast path for. */
enum kind { K_FORWARD = 0, K_OPEN, K_LOOKUP, K_IMPORT, K_SETATTR, K_CONNECT, K_ALWAYS };

typedef struct {
    const char *name; /* UTF-8 of ``object``, owned by it */
    PyObject *object; /* the event name as a str, passed to the Python hook */
    size_t length;    /* strlen(name) */
    enum kind kind;
} event_entry;

/* Repeats counted for one span: the ``(span, state)`` of a repeat table entry, held. */
typedef struct {
    PyObject *span;
    PyObject *state;
    unsigned long long count;
} pending_entry;

static event_entry events[MAX_EVENTS];
/* ``length << 16 | first << 8 | last`` of each entry, packed: every audit event in the process
   scans this, so it stays within two cache lines. */
static uint32_t event_keys[MAX_EVENTS];
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
static pending_entry pending[MAX_PENDING];
static int n_pending;
static int probe_seen;

/* Repeats (configured by ``repeats()``; all NULL until then). The table itself stays in Python,
   in the sensor's thread-local ``local.repeats``: (OpenTelemetry context, guard, {path or
   address: (span, SpanState, open flags, port or None)}), so whatever empties it there (a model
   load starting, a fork) empties it for this hook too. */
static PyObject *repeat_local;   /* the sensor's threading.local */
/* Per thread, the dictionary ``repeat_local`` holds its attributes in, found once: resolving
   ``__dict__`` on a ``threading.local`` subclass (type lookup, then the thread state's own
   dictionary) is most of what a repeat costs once the kernel work of a write or a connect has
   left the caches cold. A thread keeps its dictionary for life; thread state ids are never
   reused, so a slot of a thread that ended is never matched again and is simply replaced. */
#define THREAD_SLOTS 16
static uint64_t slot_ids[THREAD_SLOTS];     /* ``PyThreadState_GetID``; 0: a free slot */
static PyObject *slot_attributes[THREAD_SLOTS]; /* held */
static int slot_next;
static PyObject *guard_holder;   /* the ``__dict__`` of the module whose ``guard`` is the active
                                    Guard (a module keeps its dict for life) */
static PyObject *context_var;    /* the ContextVar holding OpenTelemetry's current context */
/* Whether a pipeline stage of ``judged_guard`` judges events (its ``has_stages``, kept here by
   ``set_judged()`` whenever its stages change): then every occurrence goes to Python, as it
   does while the active guard is any other. Reading the guard's attribute instead costs a type
   lookup and an instance lookup, both cold by the time the next repeat comes. Judged until told
   otherwise. */
static int judged = 1;
static PyObject *judged_guard;   /* held */
static PyObject *repeat_fold;    /* fold([(span, state, count), ...]) */
static PyObject *str_dict;
static PyObject *str_state;
static PyObject *str_repeats;
static PyObject *str_guard;

static const char CONTROL_EVENT[] = "agentguard.sensors.fasthook";
/* Raised by install() right after adding the hook. The hook recognises it by address, which
   only this file has: no caller of sys.audit() can fake it. */
static const char SELF_PROBE[] = "agentguard.sensors.fasthook.probe";

static uint32_t
event_key(const char *name, size_t length)
{
    return (uint32_t)(length & 0xffff) << 16 | (uint32_t)(unsigned char)name[0] << 8 |
           (uint32_t)(unsigned char)name[length - 1];
}

static const event_entry *
find_event(const char *event)
{
    /* Length, first and last character reject nearly every other name before memcmp runs
       (``socket.__new__`` and ``socket.connect`` differ only in their last character). */
    size_t length = strlen(event);
    if (length == 0) {
        return NULL;
    }
    uint32_t key = event_key(event, length);
    for (int i = 0; i < n_events; i++) {
        if (event_keys[i] == key && events[i].length == length &&
            memcmp(events[i].name, event, length) == 0) {
            return &events[i];
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

/* The dictionary of ``repeat_local``'s attributes for this thread (a new reference), or NULL
   with an exception set. */
static PyObject *
thread_attributes(void)
{
    uint64_t id = PyThreadState_GetID(PyThreadState_Get());
    for (int i = 0; i < THREAD_SLOTS; i++) {
        if (slot_ids[i] == id) {
            Py_INCREF(slot_attributes[i]);
            return slot_attributes[i];
        }
    }
    PyObject *attributes = PyObject_GetAttr(repeat_local, str_dict);
    if (attributes == NULL) {
        return NULL;
    }
    if (!PyDict_CheckExact(attributes)) {
        Py_DECREF(attributes);
        PyErr_SetString(PyExc_TypeError, "not a dict");
        return NULL;
    }
    int slot = slot_next;
    slot_next = (slot_next + 1) % THREAD_SLOTS;
    PyObject *replaced = slot_attributes[slot];
    Py_INCREF(attributes);
    slot_attributes[slot] = attributes;
    slot_ids[slot] = id;
    /* Last: the attributes of a thread that ended may be freed here. */
    Py_XDECREF(replaced);
    return attributes;
}

static void
clear_thread_slots(void)
{
    for (int i = 0; i < THREAD_SLOTS; i++) {
        slot_ids[i] = 0;
        Py_CLEAR(slot_attributes[i]);
    }
    slot_next = 0;
}

/* The ``(span, state, check)`` of the repeat table entry ``args`` hits (a new reference), or
   NULL to pass the event to Python. Makes exactly the checks the Python hook makes before its
   own table lookup: no pipeline stage of the active guard (then every occurrence is judged),
   this thread not busy in the sensor nor one of agentguard's own, a table filled with this
   guard in the current context. Never leaves an exception set. */
static PyObject *
repeat_hit(enum kind kind, PyObject *args)
{
    if (judged || repeat_local == NULL || !PyTuple_CheckExact(args)) {
        return NULL;
    }
    PyObject *key;
    PyObject *check = NULL; /* what the entry carries: an open's flags, an IPv4 port, or None */
    if (kind == K_OPEN) {
        /* The path, for an absolute str path and int flags, as the Python side keys it (the
           path object is usually the caller's own, its hash already computed); the entry must
           carry the same flags (never 0: those are not remembered). */
        if (PyTuple_GET_SIZE(args) != 3) {
            return NULL;
        }
        key = PyTuple_GET_ITEM(args, 0);
        check = PyTuple_GET_ITEM(args, 2);
        if (!PyUnicode_CheckExact(key) || PyUnicode_GET_LENGTH(key) == 0 ||
            PyUnicode_READ_CHAR(key, 0) != '/' || !PyLong_CheckExact(check)) {
            return NULL;
        }
    }
    else {
        /* The address of an IP connection, keyed as the Python side keys it: an IPv4
           ``(host, port)`` by its host string with the port as the check, any other address
           tuple by itself; a Unix socket's str path goes to its handler. */
        if (PyTuple_GET_SIZE(args) < 2 || !PyTuple_CheckExact(PyTuple_GET_ITEM(args, 1))) {
            return NULL;
        }
        key = PyTuple_GET_ITEM(args, 1);
        if (PyTuple_GET_SIZE(key) == 2 && PyUnicode_CheckExact(PyTuple_GET_ITEM(key, 0)) &&
            PyLong_CheckExact(PyTuple_GET_ITEM(key, 1))) {
            check = PyTuple_GET_ITEM(key, 1);
            key = PyTuple_GET_ITEM(key, 0);
        }
    }
    PyObject *guard = PyDict_GetItemWithError(guard_holder, str_guard);
    if (guard == NULL || guard == Py_None) {
        PyErr_Clear();
        return NULL;
    }
    if (guard != judged_guard) {
        return NULL; /* a guard set_judged() was not told about: Python judges */
    }
    Py_INCREF(guard);
    PyObject *hit = NULL;
    PyObject *table = NULL;
    PyObject *context = NULL;
    /* The thread's attributes (found once per thread), then two dictionary reads. */
    PyObject *attributes = thread_attributes();
    if (attributes == NULL) {
        goto done;
    }
    PyObject *state = PyDict_GetItemWithError(attributes, str_state);
    if (state == NULL || !PyLong_CheckExact(state) || PyLong_AsLong(state) != 0) {
        goto done; /* the sensor is running on this thread, or the thread is agentguard's own */
    }
    PyObject *repeats = PyDict_GetItemWithError(attributes, str_repeats);
    if (repeats != NULL && PyTuple_CheckExact(repeats) && PyTuple_GET_SIZE(repeats) == 3 &&
        PyTuple_GET_ITEM(repeats, 1) == guard && PyDict_CheckExact(PyTuple_GET_ITEM(repeats, 2))) {
        table = PyTuple_GET_ITEM(repeats, 2);
        Py_INCREF(table);
        context = PyTuple_GET_ITEM(repeats, 0);
        Py_INCREF(context);
    }
    if (table == NULL) {
        goto done;
    }
    PyObject *current = NULL;
    if (PyContextVar_Get(context_var, NULL, &current) < 0 || current != context) {
        Py_XDECREF(current);
        goto done;
    }
    Py_DECREF(current);
    hit = PyDict_GetItemWithError(table, key); /* an unhashable address sets TypeError */
    if (hit != NULL) {
        PyObject *stored = PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 3 ?
                           PyTuple_GET_ITEM(hit, 2) : NULL;
        if (stored == NULL ||
            (check == NULL ? stored != Py_None
                           : !PyLong_CheckExact(stored) ||
                             PyObject_RichCompareBool(stored, check, Py_EQ) != 1)) {
            hit = NULL; /* another open's flags, another port */
        }
    }
    Py_XINCREF(hit);
done:
    PyErr_Clear();
    Py_XDECREF(attributes);
    Py_XDECREF(table);
    Py_XDECREF(context);
    Py_DECREF(guard);
    return hit;
}

/* Counts a repeat for the span of ``hit`` (``(span, state, check)``); 0 when MAX_PENDING other
   spans are waiting already (then the Python hook counts it). Allocates nothing and runs no
   Python. */
static int
count_repeat(PyObject *hit)
{
    PyObject *state = PyTuple_GET_ITEM(hit, 1);
    for (int i = n_pending - 1; i >= 0; i--) {
        if (pending[i].state == state) {
            pending[i].count++;
            return 1;
        }
    }
    if (n_pending >= MAX_PENDING) {
        return 0;
    }
    PyObject *span = PyTuple_GET_ITEM(hit, 0);
    Py_INCREF(span);
    Py_INCREF(state);
    pending[n_pending].span = span;
    pending[n_pending].state = state;
    pending[n_pending].count = 1;
    n_pending++;
    return 1;
}

/* Hands the counted repeats to ``repeat_fold([(span, state, count), ...])`` and forgets them;
   0, or -1 with an exception set. */
static int
flush_pending(void)
{
    int n = n_pending;
    if (n == 0) {
        return 0;
    }
    /* Taken out before anything is allocated: an allocation can run a garbage collection, and
       the finalizers it runs can count new repeats. */
    pending_entry taken[MAX_PENDING];
    memcpy(taken, pending, sizeof(pending_entry) * (size_t)n);
    n_pending = 0;
    int status = -1;
    PyObject *list = PyList_New(n);
    if (list != NULL) {
        int filled = 0;
        for (; filled < n; filled++) {
            PyObject *item = Py_BuildValue("(OOK)", taken[filled].span, taken[filled].state,
                                           taken[filled].count);
            if (item == NULL) {
                break;
            }
            PyList_SET_ITEM(list, filled, item);
        }
        if (filled == n) {
            PyObject *stack[1] = {list};
            status = repeat_fold != NULL ? call_python(repeat_fold, stack, 1) : 0;
        }
        Py_DECREF(list);
    }
    for (int i = 0; i < n; i++) {
        Py_DECREF(taken[i].span);
        Py_DECREF(taken[i].state);
    }
    return status;
}

static int
hook(const char *event, PyObject *args, void *data)
{
    (void)data;
    if (event == SELF_PROBE) {
        probe_seen = 1;
        return 0;
    }
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
        /* Tracing off as for the hook: the first read of ``local`` on a thread runs its
           ``__init__``. */
#if PY_VERSION_HEX >= 0x030B0000
        PyThreadState *tstate = PyThreadState_Get();
        PyThreadState_EnterTracing(tstate);
#endif
        PyObject *hit = repeat_hit(entry->kind, args);
#if PY_VERSION_HEX >= 0x030B0000
        PyThreadState_LeaveTracing(tstate);
#endif
        if (hit != NULL) {
            /* Only the count on the span is left to do: no handler, no parsing, no Python. */
            int counted = count_repeat(hit);
            Py_DECREF(hit);
            if (counted) {
                n_repeats++;
                return 0;
            }
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
"install(callback, events, always, ordinary, modules_seen, code_attributes, write_flags)\n"
"    -> bool | None\n"
"\n"
"Route audit events to ``callback(event, args)`` through the C hook. ``events`` are the names\n"
"with a handler, ``always`` those passed on even while inactive. Adds the hook to the\n"
"interpreter the first time and checks that it runs (True; None when an existing audit hook\n"
"refused the addition, and the next call tries again). Once added, a call raises the audit\n"
"event ``agentguard.sensors.fasthook`` with ``(\"install\",)`` and then only replaces the\n"
"configuration (False).");

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
    /* Announced like set_active(): replacing the callback or the events blinds the sensor, so
       anyone but agentguard doing it is tampering. Before anything changes, so the sensor can
       refuse it. */
    if (added && PySys_Audit(CONTROL_EVENT, "(s)", "install") < 0) {
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
        fresh[filled].length = strlen(text);
        fresh[filled].kind = is_always ? K_ALWAYS : kind_of(text);
        filled++;
    }
    Py_DECREF(sequence);

    clear_events();
    memcpy(events, fresh, sizeof(event_entry) * (size_t)filled);
    for (int i = 0; i < filled; i++) {
        event_keys[i] = event_key(events[i].name, events[i].length);
    }
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
    /* PySys_AddAuditHook also returns 0 when an existing hook refused the addition: a probe
       only this file can raise tells whether the hook runs. */
    probe_seen = 0;
    if (PySys_Audit(SELF_PROBE, NULL) < 0) {
        return NULL;
    }
    if (!probe_seen) {
        Py_RETURN_NONE;
    }
    added = 1;
    Py_RETURN_TRUE;
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

PyDoc_STRVAR(set_judged_doc,
"set_judged(guard, flag)\n"
"\n"
"Whether a pipeline stage of ``guard`` judges events (its ``has_stages``): while it does, or\n"
"while the active guard is another one, repeats are not settled in C. Turning judging off\n"
"raises the audit event ``agentguard.sensors.fasthook`` with ``(\"unjudged\",)`` first: code\n"
"that stops repeats from being judged is seen by the sensor, which may refuse it.");

static PyObject *
set_judged(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_judged() takes exactly 2 arguments");
        return NULL;
    }
    int value = PyObject_IsTrue(args[1]);
    if (value < 0) {
        return NULL;
    }
    if (!value && PySys_Audit(CONTROL_EVENT, "(s)", "unjudged") < 0) {
        return NULL;
    }
    judged = 1; /* while the guard changes */
    Py_INCREF(args[0]);
    Py_XSETREF(judged_guard, args[0]);
    judged = value;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(repeats_doc,
"repeats(local, holder, variable, fold)\n"
"\n"
"Settle repeated file opens and connections in C. ``local.repeats`` is the sensor's per-thread\n"
"table ``(context, guard, {path or address: (span, state, flags or None)})`` and ``local.state``\n"
"its busy flag, ``holder.guard`` the active Guard, ``variable`` the ContextVar holding\n"
"OpenTelemetry's current context; a hit is counted in C, and ``flush()`` hands the counts to\n"
"``fold([(span, state, count), ...])``.");

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
        PyErr_SetString(PyExc_TypeError, "fold must be callable");
        return NULL;
    }
    if (str_state == NULL) {
        str_dict = PyUnicode_InternFromString("__dict__");
        str_state = PyUnicode_InternFromString("state");
        str_repeats = PyUnicode_InternFromString("repeats");
        str_guard = PyUnicode_InternFromString("guard");
        if (str_dict == NULL || str_state == NULL || str_repeats == NULL || str_guard == NULL) {
            Py_CLEAR(str_dict);
            Py_CLEAR(str_state);
            Py_CLEAR(str_repeats);
            Py_CLEAR(str_guard);
            return NULL;
        }
    }
    /* Announced like set_active(): pointing the hook at another table or counter is tampering
       unless agentguard does it. */
    if (PySys_Audit(CONTROL_EVENT, "(s)", "repeats") < 0) {
        return NULL;
    }
    Py_INCREF(args[3]);
    Py_XSETREF(repeat_fold, args[3]);
    Py_INCREF(args[2]);
    Py_XSETREF(context_var, args[2]);
    PyObject *holder = PyModule_GetDict(args[1]);
    Py_INCREF(holder);
    Py_XSETREF(guard_holder, holder);
    if (args[0] != repeat_local) {
        clear_thread_slots();
    }
    Py_INCREF(args[0]);
    Py_XSETREF(repeat_local, args[0]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(flush_doc,
"flush()\n"
"\n"
"Hand the repeats counted in C to the ``fold`` given to repeats(), and forget them. Never\n"
"raises: an error (only ever a failed allocation; ``fold`` contains its own) is reported as\n"
"unraisable and the counts are dropped.");

static PyObject *
flush(PyObject *module, PyObject *unused)
{
    (void)unused;
    if (flush_pending() < 0) {
        PyErr_WriteUnraisable(module);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stats_doc,
"stats() -> dict\n"
"\n"
"Whether the hook was added and is active, how many events it passed on to Python or settled\n"
"itself, of those how many were repeats only counted (events without a handler are not\n"
"counted), and for how many spans counted repeats wait for flush().");

static PyObject *
stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:O,s:O,s:K,s:K,s:K,s:i}", "added", added ? Py_True : Py_False,
                         "active", active ? Py_True : Py_False, "forwarded", n_forwarded,
                         "filtered", n_filtered + n_repeats, "repeats", n_repeats, "pending",
                         n_pending);
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {"set_active", set_active, METH_O, set_active_doc},
    {"set_judged", (PyCFunction)(void (*)(void))set_judged, METH_FASTCALL, set_judged_doc},
    {"repeats", (PyCFunction)(void (*)(void))repeats, METH_FASTCALL, repeats_doc},
    {"flush", flush, METH_NOARGS, flush_doc},
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
