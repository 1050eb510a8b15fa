/* python_fire_ext: the hand-written baselines of benches/python_fire.py, a
 * tiny extension built by the bench itself (outside the cbreg package).
 * Each loop runs on a fresh native thread while the calling thread waits
 * without the GIL, and returns nanoseconds per call:
 *
 *   kept(fn, n, shape)       the best hand-written path: a thread state made
 *                            once for the thread, then per call take the GIL
 *                            (PyEval_RestoreThread), build the arguments,
 *                            vectorcall, give the GIL back
 *   ensure(fn, n, shape)     PyGILState_Ensure / PyGILState_Release per call
 *                            on a thread with no thread state of its own
 *                            (what nanobind's gil_scoped_acquire does): a
 *                            thread state made and deleted every call
 *   through(invoke, id, n, shape)
 *                            cbreg_invoke (its address, from the package's
 *                            libcbreg.so) of entry `id` from a native thread
 *
 * shape 1: one float (440.0); shape 3: (tick, 440.0, "A4").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* cbreg_value as include/cbreg.h lays it out (no cbreg header needed). */
typedef struct {
    uint32_t tag;
    size_t len;
    union {
        double f64;
        int64_t i64;
        const uint8_t *str;
    } as;
    void *drop;
    void *owner;
} value_t;
typedef struct {
    uint64_t handle;
} registry_t;
typedef uint32_t (*invoke_fn)(registry_t, uint64_t, const value_t *, size_t, value_t *);
enum { TAG_I64 = 2, TAG_F64 = 3, TAG_STR = 4 };

typedef struct {
    int mode; /* 0 kept, 1 ensure, 2 through cbreg */
    PyObject *fn;
    long long n;
    int shape;
    invoke_fn invoke;
    registry_t reg;
    uint64_t id;
    PyInterpreterState *interp;
    double ns;
} job_t;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* The call itself, GIL held: build the arguments, vectorcall, drop. */
static void call_once(PyObject *fn, long long i, int shape) {
    PyObject *argv[4] = {NULL, NULL, NULL, NULL};
    Py_ssize_t n = 0;
    if (shape == 3) {
        argv[1] = PyLong_FromLongLong(i);
        argv[2] = PyFloat_FromDouble(440.0);
        argv[3] = PyUnicode_FromStringAndSize("A4", 2);
        n = 3;
    } else {
        argv[1] = PyFloat_FromDouble(440.0);
        n = 1;
    }
    PyObject *r = PyObject_Vectorcall(fn, argv + 1, (size_t)n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    for (Py_ssize_t k = 1; k <= n; ++k) Py_DECREF(argv[k]);
    if (r) {
        Py_DECREF(r);
    } else {
        PyErr_WriteUnraisable(fn);
    }
}

/* The same arguments as cbreg values; returns how many. */
static size_t fill(value_t *args, long long i, int shape) {
    static const char note[] = "A4";
    memset(args, 0, 3 * sizeof *args);
    if (shape == 3) {
        args[0].tag = TAG_I64;
        args[0].as.i64 = i;
        args[1].tag = TAG_F64;
        args[1].as.f64 = 440.0;
        args[2].tag = TAG_STR;
        args[2].len = 2;
        args[2].as.str = (const uint8_t *)note;
        return 3;
    }
    args[0].tag = TAG_F64;
    args[0].as.f64 = 440.0;
    return 1;
}

static void *run(void *arg) {
    job_t *job = (job_t *)arg;
    double t0 = 0, t1 = 0;
    if (job->mode == 0) {
        PyThreadState *ts = PyThreadState_New(job->interp);
        PyEval_RestoreThread(ts); /* one untimed call, as in mode 2 */
        call_once(job->fn, 0, job->shape);
        PyEval_SaveThread();
        t0 = now_ns();
        for (long long i = 0; i < job->n; ++i) {
            PyEval_RestoreThread(ts);
            call_once(job->fn, i, job->shape);
            PyEval_SaveThread();
        }
        t1 = now_ns();
        PyEval_RestoreThread(ts);
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    } else if (job->mode == 1) {
        t0 = now_ns();
        for (long long i = 0; i < job->n; ++i) {
            PyGILState_STATE g = PyGILState_Ensure();
            call_once(job->fn, i, job->shape);
            PyGILState_Release(g);
        }
        t1 = now_ns();
    } else {
        value_t args[3];
        size_t n = fill(args, 0, job->shape);
        /* The first call makes the thread's state: not timed, as in mode 0. */
        (void)job->invoke(job->reg, job->id, args, n, NULL);
        t0 = now_ns();
        for (long long i = 0; i < job->n; ++i) {
            n = fill(args, i, job->shape);
            (void)job->invoke(job->reg, job->id, args, n, NULL);
        }
        t1 = now_ns();
    }
    job->ns = (t1 - t0) / (double)job->n;
    return NULL;
}

static PyObject *start(job_t *job) {
    if (job->n <= 0 || (job->shape != 1 && job->shape != 3)) {
        PyErr_SetString(PyExc_ValueError, "n > 0 and shape 1 or 3");
        return NULL;
    }
    job->interp = PyInterpreterState_Get();
    pthread_t thread;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = pthread_create(&thread, NULL, run, job);
    if (err == 0) pthread_join(thread, NULL);
    Py_END_ALLOW_THREADS
    if (err != 0) return PyErr_Format(PyExc_OSError, "pthread_create: %d", err);
    return PyFloat_FromDouble(job->ns);
}

static PyObject *kept(PyObject *self, PyObject *args) {
    job_t job = {0};
    if (!PyArg_ParseTuple(args, "OLi", &job.fn, &job.n, &job.shape)) return NULL;
    job.mode = 0;
    return start(&job);
}

static PyObject *ensure(PyObject *self, PyObject *args) {
    job_t job = {0};
    if (!PyArg_ParseTuple(args, "OLi", &job.fn, &job.n, &job.shape)) return NULL;
    job.mode = 1;
    return start(&job);
}

static PyObject *through(PyObject *self, PyObject *args) {
    job_t job = {0};
    unsigned long long address = 0, handle = 0, id = 0;
    if (!PyArg_ParseTuple(args, "KKKLi", &address, &handle, &id, &job.n, &job.shape)) return NULL;
    job.mode = 2;
    job.invoke = (invoke_fn)(uintptr_t)address;
    job.reg.handle = handle;
    job.id = id;
    return start(&job);
}

static PyMethodDef methods[] = {
    {"kept", kept, METH_VARARGS, "kept(fn, n, shape): ns per call, thread state kept"},
    {"ensure", ensure, METH_VARARGS, "ensure(fn, n, shape): ns per call, PyGILState_Ensure per call"},
    {"through", through, METH_VARARGS,
     "through(cbreg_invoke_address, registry, id, n, shape): ns per call through cbreg"},
    {NULL, NULL, 0, NULL},
};

/* No state of its own: on free-threaded CPython it leaves the GIL off. */
static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "python_fire_ext", NULL, 0, methods, slots};

PyMODINIT_FUNC PyInit_python_fire_ext(void) { return PyModuleDef_Init(&module); }
