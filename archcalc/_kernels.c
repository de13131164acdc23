/*
 * archcalc._kernels: im2col and col2im for channels-first arrays, float32 and float64.
 *
 * The data movement of convolution, in C; the GEMMs stay in NumPy's BLAS. Arrays come through
 * the buffer protocol (C-contiguous, format 'f' or 'd'), so building needs no NumPy headers.
 * Every size is checked against the buffers' lengths before any memory is touched, and every
 * read and write index is checked against the input's extent, so no argument can make these
 * functions read or write out of bounds. The loops run with the GIL released.
 *
 * Geometry: 1 to 3 spatial axes, right-aligned into 3 (leading axes of size 1). Row
 * c*prod(k) + tap of the column matrix holds channel c at kernel tap `tap` (row-major over the
 * kernel axes) for every output position (row-major over the output axes).
 *
 * One thread: an OpenMP version over channels gained nothing measurable on two cores once its
 * idle threads stopped spinning against OpenBLAS's, and lost 2x while they did
 * (benchmarks/README.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>


typedef struct {
    Py_ssize_t channels;
    Py_ssize_t size[3], kernel[3], stride[3], dilation[3], pad[3], out[3];
    Py_ssize_t taps, positions, input_len, cols_len;
} Geometry;

/* Read a tuple of `rank` ints >= minimum into dst[3 - rank .. 2]. */
static int
read_axes(PyObject *obj, const char *name, Py_ssize_t rank, Py_ssize_t *dst, Py_ssize_t minimum)
{
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != rank) {
        PyErr_Format(PyExc_ValueError, "%s must be a tuple of %zd ints", name, rank);
        return -1;
    }
    for (Py_ssize_t i = 0; i < rank; i++) {
        Py_ssize_t value = PyLong_AsSsize_t(PyTuple_GET_ITEM(obj, i));
        if (value == -1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "%s must hold ints", name);
            return -1;
        }
        if (value < minimum) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be >= %zd, got %zd", name, i, minimum, value);
            return -1;
        }
        dst[3 - rank + i] = value;
    }
    return 0;
}

/* a * b, or -1 with MemoryError set when it overflows. */
static Py_ssize_t
checked_mul(Py_ssize_t a, Py_ssize_t b)
{
    if (a != 0 && b > PY_SSIZE_T_MAX / a) {
        PyErr_SetString(PyExc_MemoryError, "array sizes overflow");
        return -1;
    }
    return a * b;
}

static int
read_geometry(PyObject *args, Geometry *g)
{
    PyObject *size, *kernel, *stride, *dilation, *pad, *out;
    if (!PyArg_ParseTuple(args, "nOOOOOO", &g->channels, &size, &kernel, &stride, &dilation, &pad, &out)) {
        return -1;
    }
    if (g->channels < 1) {
        PyErr_Format(PyExc_ValueError, "channels must be >= 1, got %zd", g->channels);
        return -1;
    }
    if (!PyTuple_Check(size) || PyTuple_GET_SIZE(size) < 1 || PyTuple_GET_SIZE(size) > 3) {
        PyErr_SetString(PyExc_ValueError, "size must be a tuple of 1 to 3 ints");
        return -1;
    }
    Py_ssize_t rank = PyTuple_GET_SIZE(size);
    for (int i = 0; i < 3; i++) {
        g->size[i] = g->kernel[i] = g->stride[i] = g->dilation[i] = g->out[i] = 1;
        g->pad[i] = 0;
    }
    if (read_axes(size, "size", rank, g->size, 1) || read_axes(kernel, "kernel", rank, g->kernel, 1)
        || read_axes(stride, "stride", rank, g->stride, 1) || read_axes(dilation, "dilation", rank, g->dilation, 1)
        || read_axes(pad, "pad", rank, g->pad, 0) || read_axes(out, "out", rank, g->out, 1)) {
        return -1;
    }
    g->taps = 1;
    g->positions = 1;
    g->input_len = g->channels;
    for (int i = 0; i < 3; i++) {
        if ((g->taps = checked_mul(g->taps, g->kernel[i])) < 0
            || (g->positions = checked_mul(g->positions, g->out[i])) < 0
            || (g->input_len = checked_mul(g->input_len, g->size[i])) < 0) {
            return -1;
        }
    }
    Py_ssize_t rows = checked_mul(g->channels, g->taps);
    if (rows < 0 || (g->cols_len = checked_mul(rows, g->positions)) < 0) {
        return -1;
    }
    return 0;
}

/* 'f' (float32) or 'd' (float64), allowing the native byte-order prefixes. */
static char
buffer_kind(const Py_buffer *view)
{
    const char *format = view->format ? view->format : "B";
    if (format[0] == '@' || format[0] == '=' || format[0] == '<') {
        format++;
    }
    if ((format[0] == 'f' && view->itemsize == 4) || (format[0] == 'd' && view->itemsize == 8)) {
        if (format[1] == '\0') {
            return format[0];
        }
    }
    return 0;
}

static int
get_buffers(PyObject *src_obj, PyObject *dst_obj, Py_buffer *src, Py_buffer *dst, char *kind)
{
    if (PyObject_GetBuffer(src_obj, src, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(dst_obj, dst, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(src);
        return -1;
    }
    *kind = buffer_kind(src);
    if (*kind == 0 || buffer_kind(dst) != *kind) {
        PyErr_SetString(PyExc_TypeError, "both arrays must be float32, or both float64");
        PyBuffer_Release(src);
        PyBuffer_Release(dst);
        return -1;
    }
    return 0;
}

/*
 * For kernel tap j on an axis: the output positions o whose input index o*s + j*d - p lies in
 * [0, size) are exactly [lo, hi).
 */
static void
valid_range(Py_ssize_t size, Py_ssize_t out, Py_ssize_t s, Py_ssize_t offset, Py_ssize_t *lo, Py_ssize_t *hi)
{
    /* offset = j*d - p; need 0 <= o*s + offset < size */
    Py_ssize_t first = offset >= 0 ? 0 : (-offset + s - 1) / s;
    Py_ssize_t last = size - offset <= 0 ? 0 : (size - offset - 1) / s + 1;
    *lo = first < out ? first : out;
    *hi = last < out ? last : out;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

#define DEFINE_KERNELS(T, SUFFIX)                                                                      \
    static void im2col_##SUFFIX(const Geometry *g, const T *x, T *cols)                                \
    {                                                                                                  \
        const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2];                      \
        const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2];                               \
        const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2];                            \
        const Py_ssize_t s2 = g->stride[2];                                                            \
        Py_ssize_t c;                                                                                  \
        for (c = 0; c < g->channels; c++) {                                                            \
            for (Py_ssize_t k0 = 0; k0 < K0; k0++)                                                     \
            for (Py_ssize_t k1 = 0; k1 < K1; k1++)                                                     \
            for (Py_ssize_t k2 = 0; k2 < K2; k2++) {                                                   \
                T *row = cols + (((c * K0 + k0) * K1 + k1) * K2 + k2) * g->positions;                  \
                Py_ssize_t off2 = k2 * g->dilation[2] - g->pad[2], lo, hi;                             \
                valid_range(S2, O2, s2, off2, &lo, &hi);                                               \
                for (Py_ssize_t o0 = 0; o0 < O0; o0++) {                                               \
                    Py_ssize_t i0 = o0 * g->stride[0] + k0 * g->dilation[0] - g->pad[0];               \
                    for (Py_ssize_t o1 = 0; o1 < O1; o1++) {                                           \
                        Py_ssize_t i1 = o1 * g->stride[1] + k1 * g->dilation[1] - g->pad[1];           \
                        T *dst = row + (o0 * O1 + o1) * O2;                                            \
                        if (i0 < 0 || i0 >= S0 || i1 < 0 || i1 >= S1) {                                \
                            memset(dst, 0, (size_t)O2 * sizeof(T));                                    \
                            continue;                                                                  \
                        }                                                                              \
                        const T *src = x + ((c * S0 + i0) * S1 + i1) * S2 + off2;                      \
                        if (lo > 0) memset(dst, 0, (size_t)lo * sizeof(T));                            \
                        if (s2 == 1) {                                                                 \
                            if (hi > lo) memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(T));   \
                        } else {                                                                       \
                            for (Py_ssize_t o2 = lo; o2 < hi; o2++) dst[o2] = src[o2 * s2];            \
                        }                                                                              \
                        if (hi < O2) memset(dst + hi, 0, (size_t)(O2 - hi) * sizeof(T));               \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static void col2im_##SUFFIX(const Geometry *g, const T *cols, T *x)                                \
    {                                                                                                  \
        const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2];                      \
        const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2];                               \
        const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2];                            \
        const Py_ssize_t s2 = g->stride[2];                                                            \
        Py_ssize_t c;                                                                                  \
        for (c = 0; c < g->channels; c++) {                                                            \
            T *channel = x + c * S0 * S1 * S2;                                                         \
            memset(channel, 0, (size_t)(S0 * S1 * S2) * sizeof(T));                                    \
            for (Py_ssize_t k0 = 0; k0 < K0; k0++)                                                     \
            for (Py_ssize_t k1 = 0; k1 < K1; k1++)                                                     \
            for (Py_ssize_t k2 = 0; k2 < K2; k2++) {                                                   \
                const T *row = cols + (((c * K0 + k0) * K1 + k1) * K2 + k2) * g->positions;            \
                Py_ssize_t off2 = k2 * g->dilation[2] - g->pad[2], lo, hi;                             \
                valid_range(S2, O2, s2, off2, &lo, &hi);                                               \
                for (Py_ssize_t o0 = 0; o0 < O0; o0++) {                                               \
                    Py_ssize_t i0 = o0 * g->stride[0] + k0 * g->dilation[0] - g->pad[0];               \
                    if (i0 < 0 || i0 >= S0) continue;                                                  \
                    for (Py_ssize_t o1 = 0; o1 < O1; o1++) {                                           \
                        Py_ssize_t i1 = o1 * g->stride[1] + k1 * g->dilation[1] - g->pad[1];           \
                        if (i1 < 0 || i1 >= S1) continue;                                              \
                        const T *src = row + (o0 * O1 + o1) * O2;                                      \
                        T *dst = channel + (i0 * S1 + i1) * S2 + off2;                                 \
                        for (Py_ssize_t o2 = lo; o2 < hi; o2++) dst[o2 * s2] += src[o2];               \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

/* Shared front end: check the buffers against the geometry, then run `forward` or not. */
static PyObject *
run(PyObject *args, int forward)
{
    PyObject *src_obj, *dst_obj, *rest;
    Geometry g;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs != 9) {
        PyErr_Format(PyExc_TypeError, "expected 9 arguments (src, dst, channels, size, kernel, stride, dilation, pad, out), got %zd",
                     nargs);
        return NULL;
    }
    src_obj = PyTuple_GET_ITEM(args, 0);
    dst_obj = PyTuple_GET_ITEM(args, 1);
    rest = PyTuple_GetSlice(args, 2, 9);
    if (rest == NULL) {
        return NULL;
    }
    int bad = read_geometry(rest, &g);
    Py_DECREF(rest);
    if (bad) {
        return NULL;
    }
    Py_buffer src, dst;
    char kind;
    if (get_buffers(src_obj, dst_obj, &src, &dst, &kind) < 0) {
        return NULL;
    }
    Py_ssize_t want_src = forward ? g.input_len : g.cols_len;
    Py_ssize_t want_dst = forward ? g.cols_len : g.input_len;
    if (src.len != want_src * src.itemsize || dst.len != want_dst * dst.itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: the arrays hold %zd and %zd values; the geometry needs %zd and %zd",
                     forward ? "im2col" : "col2im", src.len / src.itemsize, dst.len / dst.itemsize, want_src, want_dst);
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return NULL;
    }
    if (src.buf == dst.buf) {
        PyErr_SetString(PyExc_ValueError, "source and destination must not be the same memory");
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f') {
        if (forward) im2col_f32(&g, (const float *)src.buf, (float *)dst.buf);
        else col2im_f32(&g, (const float *)src.buf, (float *)dst.buf);
    } else {
        if (forward) im2col_f64(&g, (const double *)src.buf, (double *)dst.buf);
        else col2im_f64(&g, (const double *)src.buf, (double *)dst.buf);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_NONE;
}

static PyObject *
im2col(PyObject *self, PyObject *args)
{
    (void)self;
    return run(args, 1);
}

static PyObject *
col2im(PyObject *self, PyObject *args)
{
    (void)self;
    return run(args, 0);
}

PyDoc_STRVAR(im2col_doc,
"im2col(x, cols, channels, size, kernel, stride, dilation, pad, out)\n\n"
"One sample's receptive fields to the columns of cols (channels*prod(kernel), prod(out)).\n"
"x is (channels, *size); size, kernel, stride, dilation, pad (before) and out are tuples of\n"
"1 to 3 ints; positions outside the input read as 0.");
PyDoc_STRVAR(col2im_doc,
"col2im(cols, x, channels, size, kernel, stride, dilation, pad, out)\n\n"
"The adjoint of im2col: x is zeroed, then every column value is added back to its input pixel.");

static PyMethodDef methods[] = {
    {"im2col", im2col, METH_VARARGS, im2col_doc},
    {"col2im", col2im, METH_VARARGS, col2im_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "archcalc._kernels", "im2col and col2im in C for archcalc.kernels.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
