/*
 * archcalc._kernels: im2col, col2im, pooling and direct convolution (depthwise and few-filter
 * layers, _direct.h) for channels-first arrays, float32 and float64; batchnorm, the clamp behind
 * ReLU/ReLU6/HardTanh and the SGD update; and the C library's erf for GELU (NumPy has no
 * vectorised erf).
 *
 * The data movement of convolution, in C; the GEMMs stay in NumPy's BLAS. Arrays come through
 * the buffer protocol (C-contiguous, format 'f' or 'd'), so building needs no NumPy headers.
 * Every size is checked against the buffers' lengths before any memory is touched, and every
 * read and write index is checked against the input's extent, so no argument can make these
 * functions read or write out of bounds. Every product and sum of the geometry that the loops
 * form (sizes, spans, window starts and ends, paddings, buffer lengths) is computed once here
 * with overflow-checked arithmetic and refused with OverflowError (MemoryError for buffer
 * lengths) when it does not fit a Py_ssize_t; every index a loop computes is then bounded by one
 * of them. The loops run with the GIL released.
 *
 * Geometry: 1 to 3 spatial axes, right-aligned into 3 (leading axes of size 1). Row
 * c*prod(k) + tap of the column matrix holds channel c at kernel tap `tap` (row-major over the
 * kernel axes) for every output position (row-major over the output axes). A batch of B samples
 * (B, C, *size) shares one matrix of B*prod(out) columns, sample b in columns
 * [b*prod(out), (b+1)*prod(out)), so that one GEMM serves the batch.
 *
 * im2col and col2im run on one thread: an OpenMP version over channels gained nothing measurable
 * on two cores once its idle threads stopped spinning against OpenBLAS's, and lost 2x while they
 * did; two threads right after a multi-threaded GEMM gained nothing either, OpenBLAS's idle
 * threads spinning on the other core (benchmarks/README.md). The direct convolutions share each
 * call's work items (taken in chunks from a shared counter) with a pool of worker threads kept
 * between calls (run_parallel); batchnorm and the clamp are split in two by the caller
 * (archcalc.kernels).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


typedef struct {
    Py_ssize_t channels, batch;
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
        PyObject *item = PyTuple_GET_ITEM(obj, i);
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s must hold ints, got %s", name, Py_TYPE(item)->tp_name);
            return -1;
        }
        Py_ssize_t value = PyLong_AsSsize_t(item);
        if (value == -1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_OverflowError, "%s[%zd] does not fit a Py_ssize_t", name, i);
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

/* a + b and a * b for the geometry (all operands >= 0): 0, or -1 with OverflowError naming it. */
static int
geometry_add(Py_ssize_t a, Py_ssize_t b, Py_ssize_t *result, const char *what, int axis)
{
    if (__builtin_add_overflow(a, b, result)) {
        PyErr_Format(PyExc_OverflowError, "%s on axis %d overflows a Py_ssize_t (%zd + %zd)", what, axis, a, b);
        return -1;
    }
    return 0;
}

static int
geometry_mul(Py_ssize_t a, Py_ssize_t b, Py_ssize_t *result, const char *what, int axis)
{
    if (__builtin_mul_overflow(a, b, result)) {
        PyErr_Format(PyExc_OverflowError, "%s on axis %d overflows a Py_ssize_t (%zd * %zd)", what, axis, a, b);
        return -1;
    }
    return 0;
}

/*
 * Bound one axis of a window geometry so that no index the loops form can overflow: the last
 * window's end (out - 1)*stride + (kernel - 1)*dilation + 1, size + pad (either side) and
 * pad + stride (valid_range's rounding) must all fit. Every index i = o*stride + j*dilation - pad
 * with 0 <= o < out and 0 <= j < kernel then lies in [-pad, last window's end).
 */
static int
bound_axis(Py_ssize_t size, Py_ssize_t kernel, Py_ssize_t stride, Py_ssize_t dilation, Py_ssize_t pad,
           Py_ssize_t pad_after, Py_ssize_t out, int axis)
{
    Py_ssize_t span, last, end, unused;
    return geometry_mul(kernel - 1, dilation, &span, "the kernel's span", axis)
        || geometry_add(span, 1, &span, "the kernel's span", axis)
        || geometry_mul(out - 1, stride, &last, "the last window's start", axis)
        || geometry_add(last, span, &end, "the last window's end", axis)
        || geometry_add(size, pad, &unused, "size + pad", axis)
        || geometry_add(size, pad_after, &unused, "size + pad_after", axis)
        || geometry_add(pad, stride, &unused, "pad + stride", axis);
}

/* The number of spatial axes: size must be a tuple of 1 to 3 ints; -1 with ValueError otherwise. */
static Py_ssize_t
spatial_rank(PyObject *size)
{
    if (!PyTuple_Check(size) || PyTuple_GET_SIZE(size) < 1 || PyTuple_GET_SIZE(size) > 3) {
        PyErr_SetString(PyExc_ValueError, "size must be a tuple of 1 to 3 ints");
        return -1;
    }
    return PyTuple_GET_SIZE(size);
}

static int
read_geometry(PyObject *args, Geometry *g)
{
    PyObject *size, *kernel, *stride, *dilation, *pad, *out;
    if (!PyArg_ParseTuple(args, "nOOOOOOn", &g->channels, &size, &kernel, &stride, &dilation, &pad, &out, &g->batch)) {
        return -1;
    }
    if (g->batch < 1) {
        PyErr_Format(PyExc_ValueError, "batch must be >= 1, got %zd", g->batch);
        return -1;
    }
    if (g->channels < 1) {
        PyErr_Format(PyExc_ValueError, "channels must be >= 1, got %zd", g->channels);
        return -1;
    }
    Py_ssize_t rank = spatial_rank(size);
    if (rank < 0) {
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        g->size[i] = g->kernel[i] = g->stride[i] = g->dilation[i] = g->out[i] = 1;
        g->pad[i] = 0;
    }
    if (read_axes(size, "size", rank, g->size, 1) || read_axes(kernel, "kernel", rank, g->kernel, 1)
        || read_axes(stride, "stride", rank, g->stride, 1) || read_axes(dilation, "dilation", rank, g->dilation, 1)
        || read_axes(pad, "pad", rank, g->pad, 0) || read_axes(out, "out", rank, g->out, 1)) {
        return -1;
    }
    for (int i = 3 - (int)rank; i < 3; i++) {
        if (bound_axis(g->size[i], g->kernel[i], g->stride[i], g->dilation[i], g->pad[i], 0, g->out[i], i - 3 + (int)rank)) {
            return -1;
        }
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
    if ((g->cols_len = checked_mul(g->cols_len, g->batch)) < 0 || checked_mul(g->input_len, g->batch) < 0) {
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
    /* offset = j*d - p; need 0 <= o*s + offset < size. bound_axis keeps p + s and size + p in range. */
    Py_ssize_t first = offset >= 0 ? 0 : (-offset + s - 1) / s;
    Py_ssize_t last = size - offset <= 0 ? 0 : (size - offset - 1) / s + 1;
    *lo = first < out ? first : out;
    *hi = last < out ? last : out;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

/*
 * A stride s2 > 1 along the last axis, up to the axis's size, goes through a copy of each
 * sample's plane of a channel held by phase (phased): row values at columns r, r + s2, r + 2*s2,
 * ... side by side, so that every tap reads (im2col) or adds to (col2im) a contiguous run instead
 * of every s2-th value.
 * Column i = q*s2 + r of a row is at r*phase + q; phase = ceil(S2 / s2) values a phase.
 */
static int
phased(const Geometry *g)
{
    return g->stride[2] > 1 && g->stride[2] <= g->size[2];
}

/* Values of one channel's plane held by phase (s2 rows of `phase` values a row), or -1 when that
 * does not fit a Py_ssize_t; 0 when the stride needs no such copy. */
static Py_ssize_t
phased_len(const Geometry *g)
{
    if (!phased(g)) {
        return 0;
    }
    Py_ssize_t phase = (g->size[2] - 1) / g->stride[2] + 1, rows = checked_mul(g->size[0], g->size[1]);
    Py_ssize_t row = checked_mul(phase, g->stride[2]); /* < 2 * S2 when s2 <= S2 */
    return rows < 0 || row < 0 ? -1 : checked_mul(rows, row);
}

/* For tap offset `off` (= k*d - p) along a phased axis of stride s: the phase r = off mod s and the
 * shift floor(off / s), so that column o*s + off is at r*phase + o + shift. */
static void
phase_of(Py_ssize_t off, Py_ssize_t s, Py_ssize_t phase, Py_ssize_t *start)
{
    Py_ssize_t shift = off >= 0 ? off / s : -((-off + s - 1) / s);
    *start = (off - shift * s) * phase + shift;
}

/* For each tap k2 of the last axis: the output columns [lo, hi) whose input column o2*s2 + off2
 * lies inside the row (valid_range), and where column o2 is in the phased copy (start + o2,
 * phase_of); the same for every channel, sample and row, so computed once per call. */
typedef struct {
    Py_ssize_t lo, hi, start;
} Run;

static void
last_axis_runs(const Geometry *g, Run *runs)
{
    const Py_ssize_t S2 = g->size[2], s2 = g->stride[2], phase = (S2 - 1) / s2 + 1;
    for (Py_ssize_t k2 = 0; k2 < g->kernel[2]; k2++) {
        Py_ssize_t off2 = k2 * g->dilation[2] - g->pad[2];
        valid_range(S2, g->out[2], s2, off2, &runs[k2].lo, &runs[k2].hi);
        runs[k2].start = 0;
        if (phased(g)) phase_of(off2, s2, phase, &runs[k2].start);
    }
}

#define DEFINE_KERNELS(T, SUFFIX)                                                                      \
    /* n values copied, added or zeroed: loops the compiler inlines and vectorises (the rows here are \
       often a few dozen values, where a call to memcpy costs as much as the copy) */                 \
    static inline void copy_run_##SUFFIX(T *restrict dst, const T *restrict src, Py_ssize_t n)          \
    {                                                                                                  \
        for (Py_ssize_t j = 0; j < n; j++) dst[j] = src[j];                                            \
    }                                                                                                  \
    static inline void add_run_##SUFFIX(T *restrict dst, const T *restrict src, Py_ssize_t n)           \
    {                                                                                                  \
        for (Py_ssize_t j = 0; j < n; j++) dst[j] += src[j];                                           \
    }                                                                                                  \
    static inline void zero_run_##SUFFIX(T *dst, Py_ssize_t n)                                          \
    {                                                                                                  \
        for (Py_ssize_t j = 0; j < n; j++) dst[j] = 0;                                                 \
    }                                                                                                  \
                                                                                                       \
    /* a plane's S0*S1 rows into (into_phases) or out of `phased`, each row held by phase of s2:      \
       column q*s2 + r of a row at r*phase + q of its `phase * s2` values */                          \
    static void phase_rows_##SUFFIX(const Geometry *g, T *plane, T *phased, int into_phases)           \
    {                                                                                                  \
        const Py_ssize_t S2 = g->size[2], s2 = g->stride[2], phase = (S2 - 1) / s2 + 1;                \
        for (Py_ssize_t r = 0; r < s2; r++) { /* r < s2 <= S2 (phased) */                             \
            const Py_ssize_t count = (S2 - 1 - r) / s2 + 1;                                            \
            for (Py_ssize_t row = 0; row < g->size[0] * g->size[1]; row++) {                           \
                T *values = plane + row * S2 + r, *held = phased + row * phase * s2 + r * phase;       \
                if (into_phases) for (Py_ssize_t q = 0; q < count; q++) held[q] = values[q * s2];      \
                else for (Py_ssize_t q = 0; q < count; q++) values[q * s2] = held[q];                  \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    /* channel by channel, each row of the matrix (a channel's tap) written along the batch;         \
       `scratch` holds every sample's plane of the channel by phase when phased(g); runs[k2] as       \
       last_axis_runs */                                                                              \
    static void im2col_##SUFFIX(const Geometry *g, const T *x, T *cols, T *scratch, const Run *runs)   \
    {                                                                                                  \
        const Py_ssize_t width = g->batch * g->positions; /* columns of the matrix */                 \
        const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2];                      \
        const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2];                               \
        const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2];                            \
        const Py_ssize_t s2 = g->stride[2], by_phase = phased(g);                                      \
        const Py_ssize_t phase = by_phase ? (S2 - 1) / s2 + 1 : 0, pitch = phase * s2;                 \
        const Py_ssize_t held = S0 * S1 * pitch; /* a sample's plane by phase in `scratch` */        \
        for (Py_ssize_t c = 0; c < g->channels; c++) {                                                 \
            if (by_phase)                                                                              \
                for (Py_ssize_t b = 0; b < g->batch; b++)                                              \
                    phase_rows_##SUFFIX(g, (T *)(x + (b * g->channels + c) * S0 * S1 * S2), scratch + b * held, 1); \
            for (Py_ssize_t k0 = 0; k0 < K0; k0++)                                                     \
            for (Py_ssize_t k1 = 0; k1 < K1; k1++)                                                     \
            for (Py_ssize_t k2 = 0; k2 < K2; k2++)                                                     \
            for (Py_ssize_t b = 0; b < g->batch; b++) { /* along the matrix's row */                  \
                const T *image = x + (b * g->channels + c) * S0 * S1 * S2, *phases = scratch + b * held; \
                T *row = cols + (((c * K0 + k0) * K1 + k1) * K2 + k2) * width + b * g->positions;      \
                const Py_ssize_t off2 = k2 * g->dilation[2] - g->pad[2], lo = runs[k2].lo, hi = runs[k2].hi; \
                for (Py_ssize_t o0 = 0; o0 < O0; o0++) {                                               \
                    Py_ssize_t i0 = o0 * g->stride[0] + k0 * g->dilation[0] - g->pad[0];               \
                    for (Py_ssize_t o1 = 0; o1 < O1; o1++) {                                           \
                        Py_ssize_t i1 = o1 * g->stride[1] + k1 * g->dilation[1] - g->pad[1];           \
                        T *dst = row + (o0 * O1 + o1) * O2;                                            \
                        if (i0 < 0 || i0 >= S0 || i1 < 0 || i1 >= S1) {                                \
                            zero_run_##SUFFIX(dst, O2);                                                \
                            continue;                                                                  \
                        }                                                                              \
                        /* o2 in [lo, hi): o2*s2 + off2 in [0, S2) */                                  \
                        const T *src = image + (i0 * S1 + i1) * S2;                                    \
                        zero_run_##SUFFIX(dst, lo);                                                    \
                        if (s2 == 1) {                                                                 \
                            copy_run_##SUFFIX(dst + lo, src + lo + off2, hi - lo);                     \
                        } else if (by_phase) { /* column o2*s2 + off2 at start + o2 of the row */     \
                            copy_run_##SUFFIX(dst + lo, phases + ((i0 * S1 + i1) * pitch + runs[k2].start + lo), hi - lo); \
                        } else {                                                                       \
                            for (Py_ssize_t o2 = lo; o2 < hi; o2++) dst[o2] = src[o2 * s2 + off2];     \
                        }                                                                              \
                        zero_run_##SUFFIX(dst + hi, O2 - hi);                                          \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    /* im2col's order, each row of the matrix read along the batch; the sums run in the same order   \
       either way: into the channel (zeroed), or into each sample's plane by phase in `scratch`       \
       (zeroed), then copied to the channel */                                                        \
    static void col2im_##SUFFIX(const Geometry *g, const T *cols, T *x, T *scratch, const Run *runs)   \
    {                                                                                                  \
        const Py_ssize_t width = g->batch * g->positions;                                              \
        const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2];                      \
        const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2];                               \
        const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2];                            \
        const Py_ssize_t s2 = g->stride[2], by_phase = phased(g);                                      \
        const Py_ssize_t phase = by_phase ? (S2 - 1) / s2 + 1 : 0, pitch = phase * s2;                 \
        const Py_ssize_t held = S0 * S1 * pitch; /* a sample's plane by phase in `scratch` */        \
        for (Py_ssize_t c = 0; c < g->channels; c++) {                                                 \
            if (by_phase) memset(scratch, 0, (size_t)(g->batch * held) * sizeof(T));                   \
            else                                                                                       \
                for (Py_ssize_t b = 0; b < g->batch; b++)                                              \
                    memset(x + (b * g->channels + c) * S0 * S1 * S2, 0, (size_t)(S0 * S1 * S2) * sizeof(T)); \
            for (Py_ssize_t k0 = 0; k0 < K0; k0++)                                                     \
            for (Py_ssize_t k1 = 0; k1 < K1; k1++)                                                     \
            for (Py_ssize_t k2 = 0; k2 < K2; k2++)                                                     \
            for (Py_ssize_t b = 0; b < g->batch; b++) { /* along the matrix's row */                  \
                T *channel = x + (b * g->channels + c) * S0 * S1 * S2, *phases = scratch + b * held;   \
                const T *row = cols + (((c * K0 + k0) * K1 + k1) * K2 + k2) * width + b * g->positions; \
                const Py_ssize_t off2 = k2 * g->dilation[2] - g->pad[2], lo = runs[k2].lo, hi = runs[k2].hi; \
                for (Py_ssize_t o0 = 0; o0 < O0; o0++) {                                               \
                    Py_ssize_t i0 = o0 * g->stride[0] + k0 * g->dilation[0] - g->pad[0];               \
                    if (i0 < 0 || i0 >= S0) continue;                                                  \
                    for (Py_ssize_t o1 = 0; o1 < O1; o1++) {                                           \
                        Py_ssize_t i1 = o1 * g->stride[1] + k1 * g->dilation[1] - g->pad[1];           \
                        if (i1 < 0 || i1 >= S1) continue;                                              \
                        const T *src = row + (o0 * O1 + o1) * O2;                                      \
                        if (by_phase) { /* the index first: start alone may be negative */            \
                            add_run_##SUFFIX(phases + ((i0 * S1 + i1) * pitch + runs[k2].start + lo), src + lo, hi - lo); \
                        } else if (s2 == 1) {                                                          \
                            add_run_##SUFFIX(channel + (i0 * S1 + i1) * S2 + off2 + lo, src + lo, hi - lo); \
                        } else {                                                                       \
                            T *dst = channel + (i0 * S1 + i1) * S2;                                    \
                            for (Py_ssize_t o2 = lo; o2 < hi; o2++) dst[o2 * s2 + off2] += src[o2];    \
                        }                                                                              \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
            if (by_phase)                                                                              \
                for (Py_ssize_t b = 0; b < g->batch; b++)                                              \
                    phase_rows_##SUFFIX(g, x + (b * g->channels + c) * S0 * S1 * S2, scratch + b * held, 0); \
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
    if (nargs != 10) {
        PyErr_Format(PyExc_TypeError,
                     "expected 10 arguments (src, dst, channels, size, kernel, stride, dilation, pad, out, batch), got %zd", nargs);
        return NULL;
    }
    src_obj = PyTuple_GET_ITEM(args, 0);
    dst_obj = PyTuple_GET_ITEM(args, 1);
    rest = PyTuple_GetSlice(args, 2, 10);
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
    Py_ssize_t want_src = forward ? g.input_len * g.batch : g.cols_len;
    Py_ssize_t want_dst = forward ? g.cols_len : g.input_len * g.batch;
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
    /* each sample's plane of one channel held by phase, for a stride along the last axis (phased) */
    Py_ssize_t scratch_len = phased_len(&g);
    if (scratch_len > 0) scratch_len = checked_mul(scratch_len, g.batch);
    void *scratch = NULL;
    if (scratch_len < 0 || (scratch_len > 0 && checked_mul(scratch_len, src.itemsize) < 0)
        || (scratch_len > 0 && (scratch = PyMem_RawMalloc((size_t)(scratch_len * src.itemsize))) == NULL)) {
        PyErr_NoMemory();
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return NULL;
    }
    Run *runs = PyMem_RawMalloc((size_t)g.kernel[2] * sizeof(Run)); /* kernel[2] <= its padded axis: fits */
    if (runs == NULL) {
        PyMem_RawFree(scratch);
        PyErr_NoMemory();
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return NULL;
    }
    last_axis_runs(&g, runs);
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f') {
        if (forward) im2col_f32(&g, (const float *)src.buf, (float *)dst.buf, (float *)scratch, runs);
        else col2im_f32(&g, (const float *)src.buf, (float *)dst.buf, (float *)scratch, runs);
    } else {
        if (forward) im2col_f64(&g, (const double *)src.buf, (double *)dst.buf, (double *)scratch, runs);
        else col2im_f64(&g, (const double *)src.buf, (double *)dst.buf, (double *)scratch, runs);
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(runs);
    PyMem_RawFree(scratch);
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

/* ------------------------------------------------------------------ pooling */

typedef struct {
    Py_ssize_t planes;
    Py_ssize_t size[3], kernel[3], stride[3], dilation[3], pad[3], pad_after[3], out[3];
    Py_ssize_t plane_len, out_len;
} PoolGeometry;

/*
 * planes, size, kernel, stride, pad (before), pad_after, out: the tuples hold 1 to 3 ints;
 * dilation (NULL: 1 on every axis) is a tuple like them.
 */
static int
read_pool_geometry(PyObject *args, Py_ssize_t first, PyObject *dilation, PoolGeometry *g)
{
    PyObject *size, *kernel, *stride, *pad, *pad_after, *out;
    PyObject *rest = PyTuple_GetSlice(args, first, first + 7);
    if (rest == NULL) {
        return -1;
    }
    int ok = PyArg_ParseTuple(rest, "nOOOOOO", &g->planes, &size, &kernel, &stride, &pad, &pad_after, &out);
    Py_DECREF(rest);
    if (!ok) {
        return -1;
    }
    if (g->planes < 1) {
        PyErr_Format(PyExc_ValueError, "planes must be >= 1, got %zd", g->planes);
        return -1;
    }
    Py_ssize_t rank = spatial_rank(size);
    if (rank < 0) {
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        g->size[i] = g->kernel[i] = g->stride[i] = g->dilation[i] = g->out[i] = 1;
        g->pad[i] = g->pad_after[i] = 0;
    }
    if (read_axes(size, "size", rank, g->size, 1) || read_axes(kernel, "kernel", rank, g->kernel, 1)
        || read_axes(stride, "stride", rank, g->stride, 1) || read_axes(pad, "pad", rank, g->pad, 0)
        || read_axes(pad_after, "pad_after", rank, g->pad_after, 0) || read_axes(out, "out", rank, g->out, 1)
        || (dilation != NULL && read_axes(dilation, "dilation", rank, g->dilation, 1))) {
        return -1;
    }
    for (int i = 3 - (int)rank; i < 3; i++) {
        if (bound_axis(g->size[i], g->kernel[i], g->stride[i], g->dilation[i], g->pad[i], g->pad_after[i], g->out[i],
                       i - 3 + (int)rank)) {
            return -1;
        }
    }
    g->plane_len = 1;
    g->out_len = 1;
    Py_ssize_t taps = 1; /* bounds the product of pool_count's three counts */
    for (int i = 0; i < 3; i++) {
        if ((g->plane_len = checked_mul(g->plane_len, g->size[i])) < 0 || (g->out_len = checked_mul(g->out_len, g->out[i])) < 0
            || (taps = checked_mul(taps, g->kernel[i])) < 0) {
            return -1;
        }
    }
    if (checked_mul(g->plane_len, g->planes) < 0 || checked_mul(g->out_len, g->planes) < 0) {
        return -1;
    }
    return 0;
}

/*
 * The taps of output o's window on axis i that read the input: j in [*lo, *hi), reading input
 * index *start + j*dilation (bound_axis keeps every such index from overflowing).
 */
static void
pool_window(const PoolGeometry *g, int i, Py_ssize_t o, Py_ssize_t *start, Py_ssize_t *lo, Py_ssize_t *hi)
{
    Py_ssize_t first = o * g->stride[i] - g->pad[i], d = g->dilation[i];
    Py_ssize_t room = g->size[i] - 1 - first; /* taps j with j*d <= room land in the input */
    Py_ssize_t end = room < 0 ? 0 : room / d + 1;
    *start = first;
    *lo = first < 0 ? -first / d + (-first % d != 0) : 0; /* -first <= pad: no overflow */
    *hi = end < g->kernel[i] ? end : g->kernel[i];
    if (*hi < *lo) {
        *hi = *lo;
    }
}

/* Values the window of output o averages over on axis i (dilation 1): the padded input, or the input alone. */
static Py_ssize_t
pool_count(const PoolGeometry *g, int i, Py_ssize_t o, int include_pad)
{
    Py_ssize_t start = o * g->stride[i] - g->pad[i];
    Py_ssize_t end = start + g->kernel[i];
    Py_ssize_t low = include_pad ? -g->pad[i] : 0;
    Py_ssize_t high = include_pad ? g->size[i] + g->pad_after[i] : g->size[i];
    Py_ssize_t a = start < low ? low : start, b = end > high ? high : end;
    return b > a ? b - a : 0;
}

/* Whether the 2D fast path runs: no window along the first axis, dilation 1 (1D and 2D max-pools). */
static int
maxpool_planar(const PoolGeometry *g)
{
    return g->size[0] == 1 && g->kernel[0] == 1 && g->pad[0] == 0 && g->out[0] == 1 && g->dilation[1] == 1
           && g->dilation[2] == 1;
}

#define DEFINE_POOLS(T, U, SUFFIX)                                                                      \
    /* maxpool_forward's loop for maxpool_planar geometries: the same windows in the same order, with  \
       the geometry in locals (the stores through y and index cannot alias them) and the window's      \
       clipping by subtraction (dilation 1) */                                                         \
    static void maxpool_planar_##SUFFIX(const PoolGeometry *g, const T *x, T *y, long long *index)     \
    {                                                                                                  \
        const Py_ssize_t height = g->size[1], width = g->size[2], kh = g->kernel[1], kw = g->kernel[2]; \
        const Py_ssize_t sh = g->stride[1], sw = g->stride[2], ph = g->pad[1], pw = g->pad[2];         \
        const Py_ssize_t out_h = g->out[1], out_w = g->out[2], planes = g->planes;                    \
        for (Py_ssize_t p = 0; p < planes; p++) {                                                      \
            const T *plane = x + p * height * width;                                                   \
            T *y_row = y + p * out_h * out_w;                                                          \
            long long *index_row = index + p * out_h * out_w;                                          \
            for (Py_ssize_t o1 = 0; o1 < out_h; o1++, y_row += out_w, index_row += out_w) {            \
                Py_ssize_t top_row = o1 * sh - ph;                                                     \
                Py_ssize_t r0 = top_row < 0 ? 0 : top_row;                                             \
                Py_ssize_t r1 = top_row + kh < height ? top_row + kh : height;                         \
                /* the first tap inside each window takes it (best -1 and 0 for a window outside) */   \
                for (Py_ssize_t o2 = 0; o2 < out_w; o2++) {                                            \
                    Py_ssize_t left = o2 * sw - pw, c0 = left < 0 ? 0 : left;                          \
                    Py_ssize_t c1 = left + kw < width ? left + kw : width;                             \
                    index_row[o2] = r0 < r1 && c0 < c1 ? r0 * width + c0 : -1;                         \
                    y_row[o2] = index_row[o2] < 0 ? 0 : plane[index_row[o2]];                          \
                }                                                                                      \
                /* then tap by tap, row-major over the window, every output at once: each output sees  \
                   its taps in the row-major order, and the outputs' chains are independent */         \
                for (Py_ssize_t r = r0; r < r1; r++) {                                                 \
                    const T *row = plane + r * width;                                                  \
                    for (Py_ssize_t kc = 0; kc < kw; kc++) {                                           \
                        Py_ssize_t lo = pw - kc > 0 ? (pw - kc + sw - 1) / sw : 0;                     \
                        Py_ssize_t last = width - 1 + pw - kc;                                         \
                        Py_ssize_t hi = last < 0 ? 0 : last / sw + 1;                                  \
                        if (hi > out_w) hi = out_w;                                                    \
                        for (Py_ssize_t o2 = lo; o2 < hi; o2++) {                                      \
                            /* branch-free (which value wins is data, which a branch mispredicts):    \
                               the winner's bits are blended in under an all-ones mask */              \
                            Py_ssize_t c = o2 * sw - pw + kc;                                          \
                            T value = row[c], top = y_row[o2];                                         \
                            U takes = (U)0 - (U)((value > top) | (value != value)), value_bits, top_bits; \
                            memcpy(&value_bits, &value, sizeof(T));                                    \
                            memcpy(&top_bits, &top, sizeof(T));                                        \
                            top_bits = (value_bits & takes) | (top_bits & ~takes);                     \
                            memcpy(&y_row[o2], &top_bits, sizeof(T));                                  \
                            unsigned long long wins = (unsigned long long)0 - (unsigned long long)(takes & 1); \
                            index_row[o2] = (long long)(((unsigned long long)(r * width + c) & wins)    \
                                                        | ((unsigned long long)index_row[o2] & ~wins)); \
                        }                                                                              \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static void maxpool_forward_##SUFFIX(const PoolGeometry *g, const T *x, T *y, long long *index)    \
    {                                                                                                  \
        if (maxpool_planar(g)) {                                                                       \
            maxpool_planar_##SUFFIX(g, x, y, index);                                                   \
            return;                                                                                    \
        }                                                                                              \
        for (Py_ssize_t p = 0; p < g->planes; p++) {                                                   \
            const T *plane = x + p * g->plane_len;                                                     \
            Py_ssize_t at = p * g->out_len;                                                            \
            for (Py_ssize_t o0 = 0; o0 < g->out[0]; o0++)                                              \
            for (Py_ssize_t o1 = 0; o1 < g->out[1]; o1++)                                              \
            for (Py_ssize_t o2 = 0; o2 < g->out[2]; o2++, at++) {                                      \
                Py_ssize_t s0, l0, h0, s1, l1, h1, s2, l2, h2, best = -1;                              \
                pool_window(g, 0, o0, &s0, &l0, &h0);                                                  \
                pool_window(g, 1, o1, &s1, &l1, &h1);                                                  \
                pool_window(g, 2, o2, &s2, &l2, &h2);                                                  \
                T top = 0;                                                                             \
                /* row-major over the window, strictly greater: the first maximum wins; a NaN     \
                   always takes over, so NaN propagates and the last NaN wins (PyTorch's CPU rule) */ \
                for (Py_ssize_t j0 = l0; j0 < h0; j0++)                                                \
                for (Py_ssize_t j1 = l1; j1 < h1; j1++)                                                \
                for (Py_ssize_t j2 = l2; j2 < h2; j2++) {                                              \
                    Py_ssize_t i0 = s0 + j0 * g->dilation[0], i1 = s1 + j1 * g->dilation[1];           \
                    Py_ssize_t flat = (i0 * g->size[1] + i1) * g->size[2] + s2 + j2 * g->dilation[2];  \
                    T value = plane[flat];                                                             \
                    if (best < 0 || value > top || value != value) {                                   \
                        top = value;                                                                   \
                        best = flat;                                                                   \
                    }                                                                                  \
                }                                                                                      \
                y[at] = top;                                                                           \
                index[at] = best;                                                                      \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static void maxpool_backward_##SUFFIX(const PoolGeometry *g, const T *dy, const long long *index,  \
                                          T *dx)                                                       \
    {                                                                                                  \
        memset(dx, 0, (size_t)(g->planes * g->plane_len) * sizeof(T));                                 \
        for (Py_ssize_t p = 0; p < g->planes; p++) {                                                   \
            for (Py_ssize_t o = 0; o < g->out_len; o++) {                                              \
                long long flat = index[p * g->out_len + o];                                            \
                if (flat >= 0) dx[p * g->plane_len + flat] += dy[p * g->out_len + o];                  \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static void avgpool_##SUFFIX(const PoolGeometry *g, const T *src, T *dst, int include_pad,         \
                                 Py_ssize_t divisor, int forward)                                      \
    {                                                                                                  \
        if (!forward) memset(dst, 0, (size_t)(g->planes * g->plane_len) * sizeof(T));                  \
        for (Py_ssize_t p = 0; p < g->planes; p++) {                                                   \
            Py_ssize_t at = p * g->out_len;                                                            \
            const T *in_plane = src + p * (forward ? g->plane_len : g->out_len);                       \
            T *out_plane = dst + p * (forward ? g->out_len : g->plane_len);                            \
            for (Py_ssize_t o0 = 0; o0 < g->out[0]; o0++)                                              \
            for (Py_ssize_t o1 = 0; o1 < g->out[1]; o1++)                                              \
            for (Py_ssize_t o2 = 0; o2 < g->out[2]; o2++, at++) {                                      \
                Py_ssize_t s0, l0, h0, s1, l1, h1, s2, l2, h2;                                         \
                pool_window(g, 0, o0, &s0, &l0, &h0);                                                  \
                pool_window(g, 1, o1, &s1, &l1, &h1);                                                  \
                pool_window(g, 2, o2, &s2, &l2, &h2);                                                  \
                l0 += s0; h0 += s0; l1 += s1; h1 += s1; l2 += s2; h2 += s2; /* dilation 1: indices */ \
                Py_ssize_t count = divisor > 0 ? divisor                                               \
                                   : pool_count(g, 0, o0, include_pad) * pool_count(g, 1, o1, include_pad) \
                                     * pool_count(g, 2, o2, include_pad);                              \
                Py_ssize_t local = at - p * g->out_len;                                                \
                if (forward) {                                                                         \
                    T total = 0;                                                                       \
                    for (Py_ssize_t i0 = l0; i0 < h0; i0++)                                            \
                    for (Py_ssize_t i1 = l1; i1 < h1; i1++)                                            \
                    for (Py_ssize_t i2 = l2; i2 < h2; i2++)                                            \
                        total += in_plane[(i0 * g->size[1] + i1) * g->size[2] + i2];                   \
                    out_plane[local] = count ? total / (T)count : 0;                                   \
                } else {                                                                               \
                    T share = count ? in_plane[local] / (T)count : 0;                                  \
                    for (Py_ssize_t i0 = l0; i0 < h0; i0++)                                            \
                    for (Py_ssize_t i1 = l1; i1 < h1; i1++)                                            \
                    for (Py_ssize_t i2 = l2; i2 < h2; i2++)                                            \
                        out_plane[(i0 * g->size[1] + i1) * g->size[2] + i2] += share;                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

DEFINE_POOLS(float, uint32_t, f32)
DEFINE_POOLS(double, uint64_t, f64)

static int
check_len(const Py_buffer *view, Py_ssize_t values, const char *name)
{
    if (view->len != values * view->itemsize) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd values; the geometry needs %zd", name, view->len / view->itemsize, values);
        return -1;
    }
    return 0;
}

static int
get_index_buffer(PyObject *obj, Py_buffer *view, int writable)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        return -1;
    }
    const char *format = view->format ? view->format : "B";
    if (format[0] == '@' || format[0] == '=' || format[0] == '<') {
        format++;
    }
    if (view->itemsize != 8 || !(format[0] == 'q' || format[0] == 'l') || format[1] != '\0') {
        PyErr_SetString(PyExc_TypeError, "the index array must be int64");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Every arg-max index must land inside its plane (-1: an empty window) before anything is written. */
static int
check_indices(const Py_buffer *index, const PoolGeometry *g)
{
    const long long *flat = (const long long *)index->buf;
    for (Py_ssize_t i = 0; i < g->planes * g->out_len; i++) {
        if (flat[i] < -1 || flat[i] >= g->plane_len) {
            PyErr_Format(PyExc_ValueError, "index[%zd] = %lld is outside a plane of %zd values", i, flat[i], g->plane_len);
            return -1;
        }
    }
    return 0;
}

/*
 * forward:  maxpool_forward(x, y, index, planes, size, kernel, stride, pad, pad_after, out)
 * backward: maxpool_backward(dy, index, dx, planes, size, kernel, stride, pad, pad_after, out)
 */
static PyObject *
maxpool(PyObject *args, int forward)
{
    PoolGeometry g;
    Py_buffer src, dst, index;
    char kind;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs != 10 && nargs != 11) {
        PyErr_SetString(PyExc_TypeError, forward
                        ? "expected 10 or 11 arguments (x, y, index, planes, size, kernel, stride, pad, pad_after, out[, dilation])"
                        : "expected 10 or 11 arguments (dy, index, dx, planes, size, kernel, stride, pad, pad_after, out[, dilation])");
        return NULL;
    }
    if (read_pool_geometry(args, 3, nargs == 11 ? PyTuple_GET_ITEM(args, 10) : NULL, &g) < 0) {
        return NULL;
    }
    PyObject *dst_obj = PyTuple_GET_ITEM(args, forward ? 1 : 2), *index_obj = PyTuple_GET_ITEM(args, forward ? 2 : 1);
    if (get_buffers(PyTuple_GET_ITEM(args, 0), dst_obj, &src, &dst, &kind) < 0) {
        return NULL;
    }
    if (get_index_buffer(index_obj, &index, forward) < 0) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return NULL;
    }
    Py_ssize_t input = g.planes * g.plane_len, output = g.planes * g.out_len;
    if (check_len(&src, forward ? input : output, forward ? "x" : "dy") == 0
        && check_len(&dst, forward ? output : input, forward ? "y" : "dx") == 0
        && check_len(&index, output, "index") == 0 && (forward || check_indices(&index, &g) == 0)) {
        long long *flat = (long long *)index.buf;
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') {
            if (forward) maxpool_forward_f32(&g, (const float *)src.buf, (float *)dst.buf, flat);
            else maxpool_backward_f32(&g, (const float *)src.buf, flat, (float *)dst.buf);
        } else {
            if (forward) maxpool_forward_f64(&g, (const double *)src.buf, (double *)dst.buf, flat);
            else maxpool_backward_f64(&g, (const double *)src.buf, flat, (double *)dst.buf);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&index);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
maxpool_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return maxpool(args, 1);
}

static PyObject *
maxpool_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return maxpool(args, 0);
}

/* avgpool(src, dst, forward, count_include_pad, planes, size, kernel, stride, pad, pad_after, out[, divisor]) */
static PyObject *
avgpool(PyObject *self, PyObject *args)
{
    (void)self;
    PoolGeometry g;
    Py_buffer src, dst;
    char kind;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args), divisor = 0;
    if (nargs != 11 && nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "expected 11 or 12 arguments (src, dst, forward, count_include_pad, planes, size, "
                                         "kernel, stride, pad, pad_after, out[, divisor])");
        return NULL;
    }
    int forward = PyObject_IsTrue(PyTuple_GET_ITEM(args, 2));
    int include_pad = PyObject_IsTrue(PyTuple_GET_ITEM(args, 3));
    if (forward < 0 || include_pad < 0 || read_pool_geometry(args, 4, NULL, &g) < 0) {
        return NULL;
    }
    if (nargs == 12) {
        divisor = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 11));
        if (divisor == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (divisor < 0) {
            PyErr_Format(PyExc_ValueError, "divisor must be >= 0 (0: the window's count), got %zd", divisor);
            return NULL;
        }
    }
    if (get_buffers(PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1), &src, &dst, &kind) < 0) {
        return NULL;
    }
    Py_ssize_t input = g.planes * g.plane_len, output = g.planes * g.out_len;
    if (check_len(&src, forward ? input : output, "src") == 0 && check_len(&dst, forward ? output : input, "dst") == 0) {
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') avgpool_f32(&g, (const float *)src.buf, (float *)dst.buf, include_pad, divisor, forward);
        else avgpool_f64(&g, (const double *)src.buf, (double *)dst.buf, include_pad, divisor, forward);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ direct convolution */

enum { DIRECT_FORWARD = 0, DIRECT_INPUT_GRAD = 1, DIRECT_WEIGHT_GRAD = 2 };

/* At most this many threads share one call (more are clamped). */
#define MAX_THREADS 64

typedef struct {
    Geometry g;
    Py_ssize_t groups, filters, cg, fg; /* channels and filters per group */
    const void *a, *b;                  /* forward: x, w; input grad: dy, w; weight grad: x, dy */
    void *out;                          /* y, dx or dw */
    int which;
    /* forward and weight grad: the input's padded copy, by phase (see _direct.h) */
    Py_ssize_t padded[3];               /* each axis padded so that every window lies inside */
    Py_ssize_t row_phase, rows;         /* axis 1: rows a phase (ceil(P1/s1)), rows a column phase (s1 times it) */
    Py_ssize_t pitch;                   /* axis 2: values a row of the copy, one phase of s2 (ceil(P2/s2)) */
    Py_ssize_t slab;                    /* values of one padded index of axis 0: s2 column phases of `rows` rows */
    Py_ssize_t plane;                   /* values of one channel's copy: P0 * slab */
    Py_ssize_t flat, slack;             /* a slice's flat length (O1*pitch, whole vectors); zeros after a copy */
    const Py_ssize_t *offset;           /* each tap's offset in the copy: its row and column, by phase */
    Py_ssize_t fchunk;                  /* weight grad: filters an item (a group's last chunk may have fewer) */
} DirectJob;

typedef float vf32 __attribute__((vector_size(32)));
typedef double vf64 __attribute__((vector_size(32)));

/* The kernels, once per dtype for any x86-64 (or other) CPU, and again for AVX2 with FMA; the
 * faster pair is chosen once, at import, from what the CPU reports (never -march=native). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif
#define T float
#define V vf32
#define VW 8
#define UINT uint32_t
#define EXPONENT 0x7f800000u
#define SUF(name) name##_f32
#include "_direct.h"
#undef T
#undef V
#undef VW
#undef SUF
#undef UINT
#undef EXPONENT
#define T double
#define V vf64
#define VW 4
#define UINT uint64_t
#define EXPONENT 0x7ff0000000000000u
#define SUF(name) name##_f64
#include "_direct.h"
#undef T
#undef V
#undef VW
#undef SUF
#undef UINT
#undef EXPONENT
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HAVE_AVX2_KERNELS 1
#pragma GCC target("avx2,fma")
#define T float
#define V vf32
#define VW 8
#define UINT uint32_t
#define EXPONENT 0x7f800000u
#define SUF(name) name##_f32_avx2
#include "_direct.h"
#undef T
#undef V
#undef VW
#undef SUF
#undef UINT
#undef EXPONENT
#define T double
#define V vf64
#define VW 4
#define UINT uint64_t
#define EXPONENT 0x7ff0000000000000u
#define SUF(name) name##_f64_avx2
#include "_direct.h"
#undef T
#undef V
#undef VW
#undef SUF
#undef UINT
#undef EXPONENT
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

typedef void (*ItemsFn)(const DirectJob *, Py_ssize_t, Py_ssize_t, void *);
static ItemsFn direct_f32 = run_items_f32, direct_f64 = run_items_f64;
static const char *direct_isa = "baseline";

/* Called once at import: the AVX2+FMA kernels when the CPU has both, unless
 * ARCHCALC_KERNELS_ISA=baseline asks for the baseline ones (the tests run both). */
static void
choose_direct_kernels(void)
{
#ifdef HAVE_AVX2_KERNELS
    const char *wanted = getenv("ARCHCALC_KERNELS_ISA");
    if (wanted != NULL && strcmp(wanted, "baseline") == 0) {
        return;
    }
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        direct_f32 = run_items_f32_avx2;
        direct_f64 = run_items_f64_avx2;
        direct_isa = "avx2";
    }
#endif
}

typedef struct {
    ItemsFn fn;
    const DirectJob *job;
    Py_ssize_t items, chunk, *next; /* the shared counter of items handed out */
    void *scratch;
} Worker;

/* Take chunks of items from the shared counter until none are left. */
static void *
worker_main(void *arg)
{
    Worker *w = (Worker *)arg;
    for (;;) {
        Py_ssize_t begin = __atomic_fetch_add(w->next, w->chunk, __ATOMIC_RELAXED);
        if (begin >= w->items) break;
        w->fn(w->job, begin, begin + w->chunk < w->items ? begin + w->chunk : w->items, w->scratch);
    }
    return NULL;
}

/*
 * The pool: threads started once and kept, so that a call hands its items to running threads
 * instead of starting new ones (on a VM, a thread started on an idle CPU took up to a millisecond
 * to run, longer than a small layer's whole call). Between calls a worker polls for the next job
 * for POOL_SPIN_NS (1 ms), then sleeps on a condition variable: a training step's calls, back to
 * back, find their workers awake, and an idle process holds no core. One call owns the pool at a
 * time; a call that finds it taken (another Python thread's, the GIL being released) starts
 * threads of its own as before. A forked child, which has none of its parent's threads, starts a
 * pool of its own.
 */
#define POOL_SPIN_NS 1000000

static struct {
    pthread_mutex_t owner;    /* held by the call using the pool */
    pthread_mutex_t lock;     /* with wake: sleeping workers wait for a new call */
    pthread_cond_t wake;
    Worker job[MAX_THREADS];  /* the current call's share for each worker */
    /* the current call: its number times 256 plus the workers it uses (< MAX_THREADS), read and
     * written whole (atomically), so that a worker's part is decided by the call it saw */
    unsigned long long call;
    Py_ssize_t done;          /* workers done with the current call (atomic) */
    Py_ssize_t started;       /* workers started (in this process) */
    unsigned long long started_at[MAX_THREADS]; /* each worker's: the call before the one that started it */
    int ready;                /* the fork handlers are registered: the pool may be used */
} pool = {.owner = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static long long
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* One turn of a polling loop: a pause, and every 256th turn the CPU offered to another thread (with
 * more threads than CPUs, a poller must not keep the one that has work waiting). */
static inline void
spin_pause(unsigned *turns)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (++*turns % 256 == 0) {
        sched_yield();
    }
}

static void *
pool_main(void *arg)
{
    unsigned long long index = (unsigned long long)(uintptr_t)arg;
    /* the call before the one that started it: unchanged since (its starter owns the pool) */
    unsigned long long seen = pool.started_at[index], current;
    for (;;) {
        long long until = now_ns() + POOL_SPIN_NS;
        unsigned turns = 0;
        while ((current = __atomic_load_n(&pool.call, __ATOMIC_ACQUIRE)) == seen && now_ns() < until) {
            spin_pause(&turns);
        }
        if (current == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((current = __atomic_load_n(&pool.call, __ATOMIC_ACQUIRE)) == seen) {
                pthread_cond_wait(&pool.wake, &pool.lock);
            }
            pthread_mutex_unlock(&pool.lock);
        }
        seen = current;
        if (index < (current & 255)) { /* a part of this call: it waits for us before the next */
            worker_main(&pool.job[index]);
            __atomic_add_fetch(&pool.done, 1, __ATOMIC_ACQ_REL);
        }
    }
    return NULL;
}

/* fork: the child has none of the parent's workers, and no call of the parent's is running in it */
static void
pool_prepare(void)
{
    pthread_mutex_lock(&pool.owner);
    pthread_mutex_lock(&pool.lock);
}

static void
pool_parent(void)
{
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.owner);
}

static void
pool_child(void)
{
    /* fresh: the condition variable still counts the parent's sleeping workers as its waiters */
    pool.started = 0;
    pthread_cond_init(&pool.wake, NULL);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.owner);
}

/* Workers 0 .. wanted-1 running, started when missing. Returns how many there are, fewer when a
 * thread cannot be started. The caller owns the pool. */
static Py_ssize_t
pool_workers(Py_ssize_t wanted)
{
    while (pool.started < wanted) {
        pthread_t id;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) {
            break;
        }
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool.started_at[pool.started] = __atomic_load_n(&pool.call, __ATOMIC_RELAXED);
        int failed = pthread_create(&id, &attr, pool_main, (void *)(uintptr_t)pool.started);
        pthread_attr_destroy(&attr);
        if (failed) {
            break;
        }
        pool.started++;
    }
    return pool.started < wanted ? pool.started : wanted;
}

/* Items [0, items) on `threads` threads (threads <= items, <= MAX_THREADS), this one included, each
 * taking chunks of about an eighth of its share as it finishes the last (so that a core busy with
 * other work slows the call by its share, not by a whole slice), thread t with the scratch at
 * scratch + t*stride bytes; the pool's workers when it is free, else threads started for the call
 * (one that cannot be started leaves its part to the others). Each item is computed whole by one
 * thread, so the split never changes a bit of the result. */
static void
run_parallel(ItemsFn fn, const DirectJob *job, Py_ssize_t items, Py_ssize_t threads, char *scratch, Py_ssize_t stride)
{
    if (threads <= 1) {
        fn(job, 0, items, scratch);
        return;
    }
    Py_ssize_t next = 0, chunk = items / (threads * 8);
    chunk = chunk > 0 ? chunk : 1;
    Worker mine = {fn, job, items, chunk, &next, scratch};
    if (pool.ready && pthread_mutex_trylock(&pool.owner) == 0) {
        Py_ssize_t helpers = pool_workers(threads - 1);
        for (Py_ssize_t t = 0; t < helpers; t++) {
            pool.job[t] = (Worker){fn, job, items, chunk, &next, scratch + (t + 1) * stride};
        }
        __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
        pthread_mutex_lock(&pool.lock);
        unsigned long long call = ((__atomic_load_n(&pool.call, __ATOMIC_RELAXED) >> 8) + 1) << 8 | (unsigned long long)helpers;
        __atomic_store_n(&pool.call, call, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
        worker_main(&mine);
        unsigned turns = 0;
        while (__atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < helpers) {
            spin_pause(&turns);
        }
        pthread_mutex_unlock(&pool.owner);
        return;
    }
    Worker workers[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (Py_ssize_t t = 1; t < threads; t++) {
        workers[t] = (Worker){fn, job, items, chunk, &next, scratch + t * stride};
        started[t] = pthread_create(&ids[t], NULL, worker_main, &workers[t]) == 0;
    }
    worker_main(&mine);
    for (Py_ssize_t t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
    }
}

/* ceil(a / b) for a >= 0, b >= 1, without overflow. */
static Py_ssize_t
ceil_div(Py_ssize_t a, Py_ssize_t b)
{
    return a / b + (a % b != 0);
}

/*
 * Fill the job's copy geometry (padded extents, phases, pitch, slab, plane, flat, slack) and return the
 * bytes of scratch one thread needs (a multiple of 64): forward, the copy of one group's channel
 * planes and 4 filters' flat slice; weight gradient, one sum vector per filter of a chunk, channel
 * of a group and tap, the chunk's dY flat slices and the copy of one plane; input gradient, one
 * plane laid out as the copy and a filter's dY flat slices. -1 with MemoryError when they do not
 * fit a Py_ssize_t.
 */
static Py_ssize_t
direct_scratch(DirectJob *job, Py_ssize_t itemsize)
{
    const Geometry *g = &job->g;
    for (int i = 0; i < 3; i++) {
        /* the last window's end, (out-1)*stride + (kernel-1)*dilation + 1, and size + pad fit (bound_axis) */
        Py_ssize_t end = (g->out[i] - 1) * g->stride[i] + (g->kernel[i] - 1) * g->dilation[i] + 1;
        Py_ssize_t before = g->size[i] + g->pad[i];
        job->padded[i] = end > before ? end : before;
    }
    Py_ssize_t lanes = 32 / itemsize, values = 0, vectors = 0;
    job->row_phase = ceil_div(job->padded[1], g->stride[1]);
    job->pitch = ceil_div(job->padded[2], g->stride[2]);
    if ((job->rows = checked_mul(job->row_phase, g->stride[1])) < 0 || (job->slab = checked_mul(job->rows, g->stride[2])) < 0
        || (job->slab = checked_mul(job->slab, job->pitch)) < 0 || (job->plane = checked_mul(job->padded[0], job->slab)) < 0
        || (job->flat = checked_mul(g->out[1], job->pitch)) < 0 || job->flat > PY_SSIZE_T_MAX - lanes
        || job->pitch > PY_SSIZE_T_MAX - lanes) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    /* the copy stays within a few times the input's plane: a padding or window far beyond the input
     * (the Python layer sends those to im2col, which copies nothing) is refused, not allocated */
    if (job->plane / 16 > g->input_len / g->channels + (1 << 20)) {
        PyErr_Format(PyExc_ValueError, "the padded copy of a plane (%zd values) is far larger than the plane (%zd)",
                     job->plane, g->input_len / g->channels);
        return -1;
    }
    /* the flat sums read a slice from its rows' start to past its last row by a row and a vector */
    job->flat = (job->flat + lanes - 1) / lanes * lanes;
    job->slack = job->pitch + lanes;
    if (job->which == DIRECT_FORWARD) {
        Py_ssize_t copy = checked_mul(job->plane, job->cg), out = checked_mul(job->flat, 4);
        if (copy < 0 || out < 0 || copy > PY_SSIZE_T_MAX - job->slack - out) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            return -1;
        }
        values = copy + job->slack + out;
    } else {
        /* one plane laid out as the copy (input gradient: the channel's gradient; weight gradient:
         * the input's copy) with the slack the flat sums reach, and the dY flat slices of one filter
         * (input gradient) or of a chunk's (weight gradient, with its sum vectors) */
        Py_ssize_t filters = job->which == DIRECT_INPUT_GRAD ? 1 : job->fchunk;
        Py_ssize_t slices = checked_mul(g->out[0], job->flat);
        if (slices >= 0) slices = checked_mul(slices, filters);
        if ((job->which == DIRECT_WEIGHT_GRAD
             && ((vectors = checked_mul(g->taps, job->cg)) < 0 || (vectors = checked_mul(vectors, job->fchunk)) < 0))
            || slices < 0 || job->plane > PY_SSIZE_T_MAX - job->slack - slices) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            return -1;
        }
        values = job->plane + job->slack + slices;
    }
    Py_ssize_t bytes = checked_mul(values, itemsize), vector_bytes = checked_mul(vectors, 32);
    if (bytes < 0 || vector_bytes < 0 || bytes > PY_SSIZE_T_MAX - vector_bytes - 64) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    return (vector_bytes + bytes + 63) / 64 * 64;
}

/* offset[t] for each tap t = (k0, k1, k2): its place in a channel's copy relative to the output
 * position's: k0*d0 slabs, the column phase and the row by phase of k1*d1, the column of k2*d2. */
static void
tap_offsets(const DirectJob *job, Py_ssize_t *offset)
{
    const Geometry *g = &job->g;
    Py_ssize_t t = 0;
    for (Py_ssize_t k0 = 0; k0 < g->kernel[0]; k0++)
    for (Py_ssize_t k1 = 0; k1 < g->kernel[1]; k1++)
    for (Py_ssize_t k2 = 0; k2 < g->kernel[2]; k2++) {
        Py_ssize_t row = k1 * g->dilation[1], column = k2 * g->dilation[2];
        offset[t++] = k0 * g->dilation[0] * job->slab + (column % g->stride[2] * job->rows + row % g->stride[1] * job->row_phase
                      + row / g->stride[1]) * job->pitch + column / g->stride[2];
    }
}

static int
overlaps(const Py_buffer *p, const Py_buffer *q)
{
    const char *a = (const char *)p->buf, *b = (const char *)q->buf;
    return a < b + q->len && b < a + p->len;
}

/*
 * conv_direct(which, a, b, out, channels, size, kernel, stride, dilation, pad, out_size, batch,
 *             groups, filters, threads)
 */
static PyObject *
conv_direct(PyObject *self, PyObject *args)
{
    (void)self;
    DirectJob job;
    Py_ssize_t threads;
    PyObject *a_obj, *b_obj, *out_obj, *geometry;
    if (PyTuple_GET_SIZE(args) != 15) {
        PyErr_Format(PyExc_TypeError, "conv_direct expected 15 arguments, got %zd", PyTuple_GET_SIZE(args));
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "iOOOnOOOOOOnnnn", &job.which, &a_obj, &b_obj, &out_obj, &job.g.channels,
                          &geometry, &geometry, &geometry, &geometry, &geometry, &geometry, &job.g.batch,
                          &job.groups, &job.filters, &threads)) {
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 4, 12);
    if (rest == NULL) {
        return NULL;
    }
    int bad = read_geometry(rest, &job.g);
    Py_DECREF(rest);
    if (bad) {
        return NULL;
    }
    if (job.which < DIRECT_FORWARD || job.which > DIRECT_WEIGHT_GRAD) {
        PyErr_Format(PyExc_ValueError, "which must be 0 (forward), 1 (input grad) or 2 (weight grad), got %d", job.which);
        return NULL;
    }
    if (job.groups < 1 || job.filters < 1 || job.g.channels % job.groups || job.filters % job.groups) {
        PyErr_Format(PyExc_ValueError, "channels %zd and filters %zd must divide by groups %zd (all >= 1)",
                     job.g.channels, job.filters, job.groups);
        return NULL;
    }
    if (threads < 1) {
        PyErr_Format(PyExc_ValueError, "threads must be >= 1, got %zd", threads);
        return NULL;
    }
    job.cg = job.g.channels / job.groups;
    job.fg = job.filters / job.groups;
    Py_ssize_t x_len = job.g.input_len * job.g.batch; /* read_geometry checked the product */
    Py_ssize_t w_len = checked_mul(job.filters, job.cg), y_len = checked_mul(job.g.batch, job.filters);
    if (w_len < 0 || y_len < 0 || (w_len = checked_mul(w_len, job.g.taps)) < 0
        || (y_len = checked_mul(y_len, job.g.positions)) < 0) {
        return NULL;
    }
    Py_ssize_t lens[3][3] = {{x_len, w_len, y_len}, {y_len, w_len, x_len}, {x_len, y_len, w_len}};
    const char *names[3][3] = {{"x", "w", "y"}, {"dy", "w", "dx"}, {"x", "dy", "dw"}};
    Py_buffer a, b, out;
    char kind, kind_b;
    if (get_buffers(a_obj, out_obj, &a, &out, &kind) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(b_obj, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&out);
        return NULL;
    }
    kind_b = buffer_kind(&b);
    const Py_buffer *views[3] = {&a, &b, &out};
    int failed = 0;
    if (kind_b != kind) {
        PyErr_SetString(PyExc_TypeError, "the three arrays must have one dtype, float32 or float64");
        failed = 1;
    }
    for (int i = 0; i < 3 && !failed; i++) {
        failed = check_len(views[i], lens[job.which][i], names[job.which][i]);
    }
    if (!failed && (overlaps(&out, &a) || overlaps(&out, &b))) {
        PyErr_SetString(PyExc_ValueError, "the result must not share memory with an operand");
        failed = 1;
    }
    char *scratch = NULL;
    Py_ssize_t *offsets = NULL;
    job.offset = NULL;
    if (!failed) {
        job.a = a.buf;
        job.b = b.buf;
        job.out = out.buf;
        /* weight grad: chunks of at most 4 filters (the kernel's register block), as even as they can
         * be, smaller while there are fewer items than threads */
        job.fchunk = ceil_div(job.fg, ceil_div(job.fg, 4));
        while (job.fchunk > 1 && job.groups * ceil_div(job.fg, job.fchunk) < threads) job.fchunk--;
        Py_ssize_t items = job.which == DIRECT_FORWARD ? job.g.batch * job.groups
                         : job.which == DIRECT_INPUT_GRAD ? job.g.batch * job.g.channels
                         : job.groups * ceil_div(job.fg, job.fchunk);
        if (threads > items) threads = items;
        if (threads > MAX_THREADS) threads = MAX_THREADS;
        Py_ssize_t stride = direct_scratch(&job, a.itemsize);
        /* one scratch per thread, each 64-byte aligned for the vectors (+ 64 to align the first) */
        if (stride < 0 || (stride > 0 && checked_mul(stride, threads) < 0)
            || (stride > 0 && (scratch = PyMem_RawMalloc((size_t)(stride * threads + 64))) == NULL)
            || checked_mul(job.g.taps, (Py_ssize_t)sizeof(Py_ssize_t)) < 0
            || (offsets = PyMem_RawMalloc((size_t)job.g.taps * sizeof(Py_ssize_t))) == NULL) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            failed = 1;
        }
        else {
            char *aligned = scratch ? scratch + (64 - (uintptr_t)scratch % 64) % 64 : NULL;
            tap_offsets(&job, offsets);
            job.offset = offsets;
            ItemsFn fn = kind == 'f' ? direct_f32 : direct_f64;
            Py_BEGIN_ALLOW_THREADS
            run_parallel(fn, &job, items, threads, aligned, stride);
            Py_END_ALLOW_THREADS
        }
    }
    PyMem_RawFree(scratch);
    PyMem_RawFree(offsets);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
direct_instruction_set(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(direct_isa);
}

/* erf(src, dst): dst[i] = erf(src[i]), the C library's erf (erff for float32), element by element. */
static PyObject *
erf_values(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *src_obj, *dst_obj;
    Py_buffer src, dst;
    char kind;
    if (!PyArg_ParseTuple(args, "OO", &src_obj, &dst_obj) || get_buffers(src_obj, dst_obj, &src, &dst, &kind) < 0) {
        return NULL;
    }
    if (src.len != dst.len) {
        PyErr_Format(PyExc_ValueError, "src and dst must have one size, got %zd and %zd bytes", src.len, dst.len);
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') {
            const float *x = (const float *)src.buf;
            float *y = (float *)dst.buf;
            for (Py_ssize_t i = 0, n = src.len / (Py_ssize_t)sizeof(float); i < n; i++) y[i] = erff(x[i]);
        }
        else {
            const double *x = (const double *)src.buf;
            double *y = (double *)dst.buf;
            for (Py_ssize_t i = 0, n = src.len / (Py_ssize_t)sizeof(double); i < n; i++) y[i] = erf(x[i]);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ batch normalisation */

/*
 * Arrays (batch, channels, spatial...) C-contiguous: channel c of sample b is the run of
 * `spatial` values at (b*channels + c)*spatial. The per-channel arrays hold `channels` values.
 * Sums run in double whatever the dtype; the element-wise arithmetic is the NumPy reference's,
 * in the dtype and in its order: x_hat = (x - mean) * inv_std, y = x_hat * weight + bias.
 */
#define DEFINE_BATCHNORM(T, SUFFIX)                                                                    \
    static void bn_stats_##SUFFIX(const T *x, T *mean, T *var, Py_ssize_t batch, Py_ssize_t channels,  \
                                  Py_ssize_t spatial, Py_ssize_t first, Py_ssize_t last)               \
    {                                                                                                  \
        double count = (double)batch * (double)spatial;                                                \
        for (Py_ssize_t c = first; c < last; c++) {                                                    \
            double total = 0;                                                                          \
            for (Py_ssize_t b = 0; b < batch; b++) {                                                   \
                const T *run = x + (b * channels + c) * spatial;                                       \
                double p[8] = {0}; /* eight chains: the adds overlap, and vectorise */                 \
                Py_ssize_t i = 0;                                                                      \
                for (; i + 8 <= spatial; i += 8) {                                                     \
                    for (int j = 0; j < 8; j++) p[j] += run[i + j];                                    \
                }                                                                                      \
                for (; i < spatial; i++) p[0] += run[i];                                               \
                total += ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));            \
            }                                                                                          \
            double m = total / count, squares = 0;                                                     \
            for (Py_ssize_t b = 0; b < batch; b++) {                                                   \
                const T *run = x + (b * channels + c) * spatial;                                       \
                double p[8] = {0};                                                                     \
                Py_ssize_t i = 0;                                                                      \
                for (; i + 8 <= spatial; i += 8) {                                                     \
                    for (int j = 0; j < 8; j++) {                                                      \
                        double d = run[i + j] - m;                                                     \
                        p[j] += d * d;                                                                 \
                    }                                                                                  \
                }                                                                                      \
                for (; i < spatial; i++) {                                                             \
                    double d = run[i] - m;                                                             \
                    p[0] += d * d;                                                                     \
                }                                                                                      \
                squares += ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));          \
            }                                                                                          \
            mean[c] = (T)m;                                                                            \
            var[c] = (T)(squares / count);                                                             \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static void bn_forward_##SUFFIX(const T *x, T *y, const T *mean, const T *inv_std, const T *weight, \
                                    const T *bias, Py_ssize_t batch, Py_ssize_t channels,              \
                                    Py_ssize_t spatial, Py_ssize_t first, Py_ssize_t last)             \
    {                                                                                                  \
        for (Py_ssize_t b = 0; b < batch; b++)                                                         \
        for (Py_ssize_t c = first; c < last; c++) {                                                    \
            const T m = mean[c], s = inv_std[c], w = weight[c], h = bias[c];                           \
            const T *run = x + (b * channels + c) * spatial;                                           \
            T *out = y + (b * channels + c) * spatial;                                                 \
            for (Py_ssize_t i = 0; i < spatial; i++) {                                                 \
                T x_hat = (run[i] - m) * s;                                                            \
                out[i] = x_hat * w + h;                                                                \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static void bn_backward_##SUFFIX(const T *x, const T *dy, T *dx, const T *mean, const T *inv_std,  \
                                     const T *weight, T *d_weight, T *d_bias, Py_ssize_t batch,        \
                                     Py_ssize_t channels, Py_ssize_t spatial, int training,            \
                                     Py_ssize_t first, Py_ssize_t last)                                \
    {                                                                                                  \
        double count = (double)batch * (double)spatial;                                                \
        for (Py_ssize_t c = first; c < last; c++) {                                                    \
            const T m = mean[c], s = inv_std[c], w = weight[c];                                        \
            double sum_dy = 0, sum_dy_hat = 0;                                                         \
            for (Py_ssize_t b = 0; b < batch; b++) {                                                   \
                const T *run = x + (b * channels + c) * spatial, *g = dy + (b * channels + c) * spatial; \
                double a0 = 0, a1 = 0, h0 = 0, h1 = 0; /* two chains of each sum */                   \
                Py_ssize_t i = 0;                                                                      \
                for (; i + 2 <= spatial; i += 2) {                                                     \
                    T x0 = (run[i] - m) * s, x1 = (run[i + 1] - m) * s;                                \
                    a0 += g[i]; a1 += g[i + 1];                                                        \
                    h0 += (double)g[i] * x0; h1 += (double)g[i + 1] * x1;                              \
                }                                                                                      \
                for (; i < spatial; i++) {                                                             \
                    a0 += g[i];                                                                        \
                    h0 += (double)g[i] * ((run[i] - m) * s);                                           \
                }                                                                                      \
                sum_dy += a0 + a1;                                                                     \
                sum_dy_hat += h0 + h1;                                                                 \
            }                                                                                          \
            d_weight[c] = (T)sum_dy_hat;                                                               \
            d_bias[c] = (T)sum_dy;                                                                     \
            /* dx = (d_hat - mean(d_hat) - x_hat * mean(d_hat * x_hat)) * inv_std, d_hat = dy * w */   \
            const T shift = training ? (T)(w * sum_dy / count) : 0;                                    \
            const T slope = training ? (T)(w * sum_dy_hat / count) : 0;                                \
            for (Py_ssize_t b = 0; b < batch; b++) {                                                   \
                const T *run = x + (b * channels + c) * spatial, *g = dy + (b * channels + c) * spatial; \
                T *out = dx + (b * channels + c) * spatial;                                            \
                if (training) {                                                                        \
                    for (Py_ssize_t i = 0; i < spatial; i++) {                                         \
                        T x_hat = (run[i] - m) * s;                                                    \
                        out[i] = (g[i] * w - shift - x_hat * slope) * s;                               \
                    }                                                                                  \
                } else {                                                                               \
                    for (Py_ssize_t i = 0; i < spatial; i++) out[i] = g[i] * w * s;                    \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

DEFINE_BATCHNORM(float, f32)
DEFINE_BATCHNORM(double, f64)

/* Get `count` buffers, C-contiguous, all float32 or all float64, those flagged in `writable` writable. */
static int
get_same_kind(PyObject *const *objs, Py_buffer *views, int count, unsigned writable, char *kind)
{
    for (int i = 0; i < count; i++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | ((writable >> i) & 1 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[i], &views[i], flags) < 0) {
            for (int j = 0; j < i; j++) PyBuffer_Release(&views[j]);
            return -1;
        }
        char this_kind = buffer_kind(&views[i]);
        if (i == 0) *kind = this_kind;
        if (this_kind == 0 || this_kind != *kind) {
            PyErr_SetString(PyExc_TypeError, "the arrays must all be float32, or all float64");
            for (int j = 0; j <= i; j++) PyBuffer_Release(&views[j]);
            return -1;
        }
    }
    return 0;
}

/*
 * The shape (batch, channels, spatial) from batch, channels and the big buffers' lengths: every
 * big buffer holds batch*channels*spatial values and every per-channel one `channels` values.
 */
static int
bn_shape(const Py_buffer *views, int big, int count, Py_ssize_t batch, Py_ssize_t channels, Py_ssize_t *spatial)
{
    if (batch < 1 || channels < 1) {
        PyErr_Format(PyExc_ValueError, "batch and channels must be >= 1, got %zd and %zd", batch, channels);
        return -1;
    }
    Py_ssize_t planes = checked_mul(batch, channels);
    if (planes < 0) {
        return -1;
    }
    Py_ssize_t values = views[0].len / views[0].itemsize;
    if (values % planes != 0 || values == 0) {
        PyErr_Format(PyExc_ValueError, "x holds %zd values, not a positive multiple of batch*channels = %zd", values, planes);
        return -1;
    }
    *spatial = values / planes;
    for (int i = 1; i < count; i++) {
        if (check_len(&views[i], i < big ? values : channels, i < big ? "an input-sized array" : "a per-channel array") < 0) {
            return -1;
        }
    }
    return 0;
}

/* The channels [first, last) to run (last -1: to the end): a caller may split the channels over threads. */
static int
bn_range(Py_ssize_t channels, Py_ssize_t *first, Py_ssize_t *last)
{
    if (*last == -1) {
        *last = channels;
    }
    if (*first < 0 || *first > *last || *last > channels) {
        PyErr_Format(PyExc_ValueError, "the channel range [%zd, %zd) must lie within [0, %zd]", *first, *last, channels);
        return -1;
    }
    return 0;
}

/* batchnorm_stats(x, mean, var, batch, channels[, first, last]): per channel the mean and the biased variance. */
static PyObject *
batchnorm_stats(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objs[3];
    Py_buffer views[3];
    Py_ssize_t batch, channels, spatial;
    char kind = 0;
    Py_ssize_t first = 0, last = -1;
    if (!PyArg_ParseTuple(args, "OOOnn|nn", &objs[0], &objs[1], &objs[2], &batch, &channels, &first, &last)
        || get_same_kind(objs, views, 3, 0x6, &kind) < 0) {
        return NULL;
    }
    if (bn_shape(views, 1, 3, batch, channels, &spatial) == 0 && bn_range(channels, &first, &last) == 0) {
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') bn_stats_f32(views[0].buf, views[1].buf, views[2].buf, batch, channels, spatial, first, last);
        else bn_stats_f64(views[0].buf, views[1].buf, views[2].buf, batch, channels, spatial, first, last);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < 3; i++) PyBuffer_Release(&views[i]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* batchnorm_forward(x, y, mean, inv_std, weight, bias, batch, channels[, first, last]) */
static PyObject *
batchnorm_forward(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objs[6];
    Py_buffer views[6];
    Py_ssize_t batch, channels, spatial;
    char kind = 0;
    Py_ssize_t first = 0, last = -1;
    if (!PyArg_ParseTuple(args, "OOOOOOnn|nn", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &batch,
                          &channels, &first, &last)
        || get_same_kind(objs, views, 6, 0x2, &kind) < 0) {
        return NULL;
    }
    if (bn_shape(views, 2, 6, batch, channels, &spatial) == 0 && bn_range(channels, &first, &last) == 0) {
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') bn_forward_f32(views[0].buf, views[1].buf, views[2].buf, views[3].buf, views[4].buf, views[5].buf,
                                        batch, channels, spatial, first, last);
        else bn_forward_f64(views[0].buf, views[1].buf, views[2].buf, views[3].buf, views[4].buf, views[5].buf,
                            batch, channels, spatial, first, last);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < 6; i++) PyBuffer_Release(&views[i]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* batchnorm_backward(x, dy, dx, mean, inv_std, weight, d_weight, d_bias, batch, channels, training[, first, last]) */
static PyObject *
batchnorm_backward(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objs[8], *training_obj;
    Py_buffer views[8];
    Py_ssize_t batch, channels, spatial;
    char kind = 0;
    Py_ssize_t first = 0, last = -1;
    if (!PyArg_ParseTuple(args, "OOOOOOOOnnO|nn", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                          &objs[7], &batch, &channels, &training_obj, &first, &last)) {
        return NULL;
    }
    int training = PyObject_IsTrue(training_obj);
    if (training < 0 || get_same_kind(objs, views, 8, 0xC4, &kind) < 0) {
        return NULL;
    }
    if (bn_shape(views, 3, 8, batch, channels, &spatial) == 0 && bn_range(channels, &first, &last) == 0) {
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') bn_backward_f32(views[0].buf, views[1].buf, views[2].buf, views[3].buf, views[4].buf, views[5].buf,
                                         views[6].buf, views[7].buf, batch, channels, spatial, training, first, last);
        else bn_backward_f64(views[0].buf, views[1].buf, views[2].buf, views[3].buf, views[4].buf, views[5].buf,
                             views[6].buf, views[7].buf, batch, channels, spatial, training, first, last);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < 8; i++) PyBuffer_Release(&views[i]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ clamp (ReLU, ReLU6, HardTanh) */

/*
 * forward:  y = min(max(x, low), high), NaN staying NaN (NumPy's clip, PyTorch's clamp);
 * backward: dx = dy * (low < y < high) from the output y (the same values as the mask of x:
 * y equals x exactly there), without a high bound when has_high is 0.
 */
#define DEFINE_CLAMP(T, SUFFIX)                                                                        \
    static void clamp_forward_##SUFFIX(const T *x, T *y, Py_ssize_t n, T low, T high, int has_high)    \
    {                                                                                                  \
        if (has_high) {                                                                                \
            for (Py_ssize_t i = 0; i < n; i++) {                                                       \
                T v = x[i];                                                                            \
                y[i] = v < low ? low : (v > high ? high : v);                                          \
            }                                                                                          \
        } else {                                                                                       \
            for (Py_ssize_t i = 0; i < n; i++) {                                                       \
                T v = x[i];                                                                            \
                y[i] = v < low ? low : v;                                                              \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static void clamp_backward_##SUFFIX(const T *y, const T *dy, T *dx, Py_ssize_t n, T low, T high,   \
                                        int has_high)                                                  \
    {                                                                                                  \
        if (has_high) {                                                                                \
            for (Py_ssize_t i = 0; i < n; i++) dx[i] = dy[i] * (T)((y[i] > low) & (y[i] < high));         \
        } else {                                                                                       \
            /* the second test is always true where the first is; with it GCC vectorises the loop */        \
            for (Py_ssize_t i = 0; i < n; i++) dx[i] = dy[i] * (T)((y[i] > low) & (y[i] == y[i]));          \
        }                                                                                              \
    }

DEFINE_CLAMP(float, f32)
DEFINE_CLAMP(double, f64)

/* clamp_forward(x, y, low, high) and clamp_backward(y, dy, dx, low, high); high None: no upper bound. */
static PyObject *
clamp(PyObject *args, int forward)
{
    PyObject *objs[3], *high_obj;
    Py_buffer views[3];
    double low, high = 0;
    char kind = 0;
    int count = forward ? 2 : 3;
    if (forward ? !PyArg_ParseTuple(args, "OOdO", &objs[0], &objs[1], &low, &high_obj)
                : !PyArg_ParseTuple(args, "OOOdO", &objs[0], &objs[1], &objs[2], &low, &high_obj)) {
        return NULL;
    }
    int has_high = high_obj != Py_None;
    if (has_high && (high = PyFloat_AsDouble(high_obj)) == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (get_same_kind(objs, views, count, forward ? 0x2 : 0x4, &kind) < 0) {
        return NULL;
    }
    Py_ssize_t n = views[0].len / views[0].itemsize;
    int ok = 1;
    for (int i = 1; i < count && ok; i++) {
        ok = check_len(&views[i], n, "every array") == 0;
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') {
            if (forward) clamp_forward_f32(views[0].buf, views[1].buf, n, (float)low, (float)high, has_high);
            else clamp_backward_f32(views[0].buf, views[1].buf, views[2].buf, n, (float)low, (float)high, has_high);
        } else {
            if (forward) clamp_forward_f64(views[0].buf, views[1].buf, n, low, high, has_high);
            else clamp_backward_f64(views[0].buf, views[1].buf, views[2].buf, n, low, high, has_high);
        }
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < count; i++) PyBuffer_Release(&views[i]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
clamp_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return clamp(args, 1);
}

static PyObject *
clamp_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return clamp(args, 0);
}

/* ------------------------------------------------------------------ SGD */

/*
 * One tensor's SGD step in one pass, the NumPy reference's arithmetic in the dtype and in its
 * order (PyTorch's form): u = g + weight_decay * w (when weight_decay); with momentum,
 * v = u on the first step, else v = momentum * v + u, and u = v; then w = w - lr * u.
 */
#define DEFINE_SGD(T, SUFFIX)                                                                          \
    static void sgd_##SUFFIX(T *w, const T *g, T *v, Py_ssize_t n, T lr, T momentum, T weight_decay,    \
                             int decay, int use_velocity, int first)                                   \
    {                                                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                                           \
            T u = decay ? g[i] + weight_decay * w[i] : g[i];                                           \
            if (use_velocity) {                                                                        \
                u = first ? u : v[i] * momentum + u;                                                   \
                v[i] = u;                                                                              \
            }                                                                                          \
            w[i] = w[i] - lr * u;                                                                      \
        }                                                                                              \
    }

DEFINE_SGD(float, f32)
DEFINE_SGD(double, f64)

/* sgd(weight, grad, velocity, lr, momentum, weight_decay, first); velocity None: no momentum. */
static PyObject *
sgd(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objs[3], *velocity_obj;
    Py_buffer views[3];
    double lr, momentum, weight_decay;
    int first;
    char kind = 0;
    if (!PyArg_ParseTuple(args, "OOOdddp", &objs[0], &objs[1], &velocity_obj, &lr, &momentum, &weight_decay, &first)) {
        return NULL;
    }
    int use_velocity = velocity_obj != Py_None, count = use_velocity ? 3 : 2;
    objs[2] = velocity_obj;
    if (get_same_kind(objs, views, count, 0x5, &kind) < 0) {
        return NULL;
    }
    Py_ssize_t n = views[0].len / views[0].itemsize;
    if (check_len(&views[1], n, "grad") == 0 && (!use_velocity || check_len(&views[2], n, "velocity") == 0)) {
        int decay = weight_decay != 0;
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') sgd_f32(views[0].buf, views[1].buf, use_velocity ? views[2].buf : NULL, n, (float)lr, (float)momentum,
                                 (float)weight_decay, decay, use_velocity, first);
        else sgd_f64(views[0].buf, views[1].buf, use_velocity ? views[2].buf : NULL, n, lr, momentum, weight_decay, decay,
                     use_velocity, first);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < count; i++) PyBuffer_Release(&views[i]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(erf_doc,
"erf(src, dst)\n\n"
"dst = erf(src) value by value (the C library's erf, erff for float32); both C-contiguous,\n"
"of one dtype (float32 or float64) and one size.");
PyDoc_STRVAR(im2col_doc,
"im2col(x, cols, channels, size, kernel, stride, dilation, pad, out, batch)\n\n"
"Receptive fields to the columns of cols (channels*prod(kernel), batch*prod(out)). x is\n"
"(batch, channels, *size); size, kernel, stride, dilation, pad (before) and out are tuples of\n"
"1 to 3 ints; positions outside the input read as 0.");
PyDoc_STRVAR(maxpool_forward_doc,
"maxpool_forward(x, y, index, planes, size, kernel, stride, pad, pad_after, out[, dilation])\n\n"
"Max over each (dilated) window of each of `planes` planes; index (int64) gets the arg-max's flat\n"
"position in its plane, the first maximum in row-major order (a NaN always takes over).");
PyDoc_STRVAR(maxpool_backward_doc,
"maxpool_backward(dy, index, dx, planes, size, kernel, stride, pad, pad_after, out[, dilation])\n\n"
"dx is zeroed, then each window's gradient is added at its arg-max.");
PyDoc_STRVAR(avgpool_doc,
"avgpool(src, dst, forward, count_include_pad, planes, size, kernel, stride, pad, pad_after, out[, divisor])\n\n"
"Average pooling forward (src = x, dst = y) or backward (src = dy, dst = dx, zeroed first), with\n"
"PyTorch's divisor: the window within the padded input, or within the input alone, or divisor\n"
"when it is above 0 (divisor_override).");
PyDoc_STRVAR(col2im_doc,
"col2im(cols, x, channels, size, kernel, stride, dilation, pad, out, batch)\n\n"
"The adjoint of im2col: x is zeroed, then every column value is added back to its input pixel.");

PyDoc_STRVAR(conv_direct_doc,
"conv_direct(which, a, b, out, channels, size, kernel, stride, dilation, pad, out_size, batch, groups, filters, threads)\n\n"
"Direct (no im2col) grouped convolution, on `threads` threads. which 0: out = y (batch, filters, *out_size)\n"
"from a = x (batch, channels, *size) and b = w (filters, channels/groups, *kernel); 1: out = dx from\n"
"a = dy and b = w; 2: out = dw from a = x and b = dy. One dtype (float32 or float64), C-contiguous.");
PyDoc_STRVAR(instruction_set_doc,
"instruction_set()\n\nThe direct kernels in use: 'avx2' (AVX2 with FMA, when the CPU has both) or 'baseline'.");
PyDoc_STRVAR(batchnorm_stats_doc,
"batchnorm_stats(x, mean, var, batch, channels[, first, last])\n\n"
"Per channel of x (batch, channels, *spatial) the mean and the biased variance (two passes,\n"
"summed in double).");
PyDoc_STRVAR(batchnorm_forward_doc,
"batchnorm_forward(x, y, mean, inv_std, weight, bias, batch, channels[, first, last])\n\n"
"y = (x - mean) * inv_std * weight + bias per channel, in the dtype and in that order.");
PyDoc_STRVAR(batchnorm_backward_doc,
"batchnorm_backward(x, dy, dx, mean, inv_std, weight, d_weight, d_bias, batch, channels, training[, first, last])\n\n"
"d_weight = sum(dy * x_hat), d_bias = sum(dy) per channel (x_hat recomputed from x); dx of the\n"
"batch statistics (training) or of fixed ones. first and last: only the channels [first, last) (last -1:\n"
"to the end), so that callers can split the channels over threads.");
PyDoc_STRVAR(clamp_forward_doc,
"clamp_forward(x, y, low, high)\n\n"
"y = min(max(x, low), high) value by value (high None: no upper bound); NaN stays NaN.");
PyDoc_STRVAR(clamp_backward_doc,
"clamp_backward(y, dy, dx, low, high)\n\n"
"dx = dy * (low < y < high) from the clamp's output y (high None: no upper bound).");
PyDoc_STRVAR(sgd_doc,
"sgd(weight, grad, velocity, lr, momentum, weight_decay, first)\n\n"
"One SGD step in place, PyTorch's form: u = grad + weight_decay * weight; with a velocity (not\n"
"None) velocity = u on the first step, else momentum * velocity + u, and u = velocity; then\n"
"weight -= lr * u.");

static PyMethodDef methods[] = {
    {"im2col", im2col, METH_VARARGS, im2col_doc},
    {"col2im", col2im, METH_VARARGS, col2im_doc},
    {"maxpool_forward", maxpool_forward, METH_VARARGS, maxpool_forward_doc},
    {"maxpool_backward", maxpool_backward, METH_VARARGS, maxpool_backward_doc},
    {"avgpool", avgpool, METH_VARARGS, avgpool_doc},
    {"erf", erf_values, METH_VARARGS, erf_doc},
    {"conv_direct", conv_direct, METH_VARARGS, conv_direct_doc},
    {"instruction_set", direct_instruction_set, METH_NOARGS, instruction_set_doc},
    {"batchnorm_stats", batchnorm_stats, METH_VARARGS, batchnorm_stats_doc},
    {"batchnorm_forward", batchnorm_forward, METH_VARARGS, batchnorm_forward_doc},
    {"batchnorm_backward", batchnorm_backward, METH_VARARGS, batchnorm_backward_doc},
    {"clamp_forward", clamp_forward, METH_VARARGS, clamp_forward_doc},
    {"clamp_backward", clamp_backward, METH_VARARGS, clamp_backward_doc},
    {"sgd", sgd, METH_VARARGS, sgd_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "archcalc._kernels", "im2col, col2im, pooling, direct convolution, batchnorm, clamp, SGD and erf in C for archcalc.kernels.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    if (!pool.ready && pthread_atfork(pool_prepare, pool_parent, pool_child) == 0) {
        pool.ready = 1;
    }
    choose_direct_kernels();
    return PyModule_Create(&module);
}
