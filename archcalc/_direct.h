/*
 * Direct convolution kernels: a template included by _kernels.c once per dtype and instruction
 * set, with T (float or double), V (a GCC/Clang vector of VW T's, 32 bytes) and SUF(name) (the
 * name with its dtype's and instruction set's suffix) defined.
 *
 * Used for the layers a GEMM serves badly: depthwise convolutions (one input channel per group)
 * and convolutions with few filters per group (LeNet's), where im2col's matrix is prod(k) times
 * the input and the GEMM's few rows keep BLAS far from its rate. Every function here works on one
 * slice [begin, end) of independent work items, so that threads share the items with no two
 * writing one value:
 *   forward      item (n, group):  y[n, filters of the group] = sum over its channels and taps
 *   input grad   item (n, c):      dx[n, c] = sum over the group's filters and taps (scattered)
 *   weight grad  item f:           dw[f] = sum over samples and positions
 * Forward and the weight gradient read the input through a zero-padded copy of its planes in the
 * slice's scratch (DirectJob.padded; none when the geometry has no padding), so that every window
 * lies inside it: index o*s + j*d on each axis, with no bounds to test. The geometry is
 * _kernels.c's, checked there (every padded extent, product and index fits a Py_ssize_t).
 */

/* *v = VW values from p, p + s, ..., p + (VW-1)*s (through a pointer: a vector return value
 * would change the ABI of the baseline build). */
static inline __attribute__((always_inline)) void
SUF(load)(V *v, const T *p, Py_ssize_t s)
{
    if (s == 1) {
        memcpy(v, p, sizeof *v);
    } else {
        for (int j = 0; j < VW; j++) (*v)[j] = p[j * s];
    }
}

/* *v = the first `count` (< VW) of those values, zeros after them. */
static inline void
SUF(load_part)(V *v, const T *p, Py_ssize_t s, Py_ssize_t count)
{
    *v = (V){0};
    for (Py_ssize_t j = 0; j < count; j++) (*v)[j] = p[j * s];
}

/* The planes of one sample's channels with each axis padded to P (the padded extents): x's own
 * planes when nothing is padded, the sums are not flat and the stride along the last axis is 1,
 * else a copy in `scratch` with zeros around and DirectJob.slack zeros after. Its rows are
 * DirectJob.pitch long: with a stride s2 > 1 along the last axis, each row holds its columns by
 * phase (column j at (j % s2)*phase + j/s2), so that output column o reads tap column
 * o*s2 + off at (off % s2)*phase + off/s2 + o: consecutive outputs, consecutive values. */
static const T *
SUF(padded_planes)(const DirectJob *job, const T *x, Py_ssize_t channels, T *scratch)
{
    const Geometry *g = &job->g;
    const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2];
    const Py_ssize_t P0 = job->padded[0], P1 = job->padded[1], pitch = job->pitch, s2 = g->stride[2];
    if (!job->pads && !job->flat) {
        return x;
    }
    /* flat sums read up to job->slack values past the last plane (zeros) */
    memset(scratch, 0, (size_t)(channels * P0 * P1 * pitch + job->slack) * sizeof(T));
    for (Py_ssize_t c = 0; c < channels; c++)
    for (Py_ssize_t i0 = 0; i0 < S0; i0++)
    for (Py_ssize_t i1 = 0; i1 < S1; i1++) {
        T *dst = scratch + ((c * P0 + i0 + g->pad[0]) * P1 + i1 + g->pad[1]) * pitch;
        const T *src = x + ((c * S0 + i0) * S1 + i1) * S2;
        if (s2 == 1) {
            memcpy(dst + g->pad[2], src, (size_t)S2 * sizeof(T));
        } else { /* column j to phase j % s2, position j / s2: a strided row read becomes contiguous */
            for (Py_ssize_t r = 0; r < s2; r++) { /* the input columns i2 with (i2 + pad) % s2 == r */
                Py_ssize_t first = ((r - g->pad[2]) % s2 + s2) % s2;
                T *d = dst + r * job->phase + (first + g->pad[2]) / s2;
                for (Py_ssize_t i2 = first, q = 0; i2 < S2; i2 += s2, q++) d[q] = src[i2];
            }
        }
    }
    return scratch;
}

/* Whether none of n values is infinite or NaN (their exponent bits all set), in a loop the
 * compiler vectorises (integer operations only). */
static int
SUF(all_finite)(const T *p, Py_ssize_t n)
{
    UINT bad = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        UINT bits;
        memcpy(&bits, p + j, sizeof bits);
        bad |= (UINT)((bits & EXPONENT) == EXPONENT);
    }
    return bad == 0;
}

/*
 * FB filters x VB*VW consecutive output values of one output row (o0, o1), columns [a, a+VB*VW).
 * x: the group's padded planes of one sample; w: filter f0's weights; y: filter f0's output plane.
 * Always inlined with constant FB and VB, so that the accumulators live in registers.
 */
static inline __attribute__((always_inline)) void
SUF(forward_block)(const DirectJob *job, const T *x, const T *w, T *y, Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t a,
                   const int FB, const int VB)
{
    const Geometry *g = &job->g;
    const Py_ssize_t P0 = job->padded[0], P1 = job->padded[1], pitch = job->pitch;
    const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2];
    const Py_ssize_t s2 = g->stride[2], taps = g->taps, wstride = job->cg * taps;
    V acc[4][4];
    for (int fb = 0; fb < FB; fb++)
        for (int vb = 0; vb < VB; vb++) acc[fb][vb] = (V){0};
    for (Py_ssize_t c = 0; c < job->cg; c++)
    for (Py_ssize_t k0 = 0; k0 < K0; k0++)
    for (Py_ssize_t k1 = 0; k1 < K1; k1++) {
        Py_ssize_t i0 = o0 * g->stride[0] + k0 * g->dilation[0], i1 = o1 * g->stride[1] + k1 * g->dilation[1];
        const T *row = x + ((c * P0 + i0) * P1 + i1) * pitch + a;
        const T *wt = w + c * taps + (k0 * K1 + k1) * K2;
        Py_ssize_t r = 0, q = 0; /* tap k2's column offset k2*d2 = q*s2 + r */
        for (Py_ssize_t k2 = 0; k2 < K2; k2++) {
            const T *p = row + r * job->phase + q;
            r += job->step_r;
            q += job->step_q;
            if (r >= s2) {
                r -= s2;
                q++;
            }
            for (int vb = 0; vb < VB; vb++) {
                V xv;
                SUF(load)(&xv, p + vb * VW, 1);
                for (int fb = 0; fb < FB; fb++) acc[fb][vb] += wt[fb * wstride + k2] * xv;
            }
        }
    }
    Py_ssize_t at = (o0 * g->out[1] + o1) * g->out[2] + a;
    for (int fb = 0; fb < FB; fb++)
        for (int vb = 0; vb < VB; vb++) memcpy(y + fb * g->positions + at + vb * VW, &acc[fb][vb], sizeof(V));
}

/* The same sums one output value at a time: rows narrower than a vector. */
static void
SUF(forward_values)(const DirectJob *job, const T *x, const T *w, T *y, Py_ssize_t nf, Py_ssize_t o0,
                    Py_ssize_t o1, Py_ssize_t from, Py_ssize_t to)
{
    const Geometry *g = &job->g;
    const Py_ssize_t P0 = job->padded[0], P1 = job->padded[1], pitch = job->pitch, s2 = g->stride[2];
    const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2], taps = g->taps;
    for (Py_ssize_t o2 = from; o2 < to; o2++)
    for (Py_ssize_t f = 0; f < nf; f++) {
        const T *wf = w + f * job->cg * taps;
        T sum = 0;
        for (Py_ssize_t c = 0; c < job->cg; c++)
        for (Py_ssize_t k0 = 0; k0 < K0; k0++)
        for (Py_ssize_t k1 = 0; k1 < K1; k1++) {
            Py_ssize_t i0 = o0 * g->stride[0] + k0 * g->dilation[0], i1 = o1 * g->stride[1] + k1 * g->dilation[1];
            const T *row = x + ((c * P0 + i0) * P1 + i1) * pitch + o2;
            for (Py_ssize_t k2 = 0; k2 < K2; k2++) {
                Py_ssize_t off = k2 * g->dilation[2];
                sum += wf[c * taps + (k0 * K1 + k1) * K2 + k2] * row[off % s2 * job->phase + off / s2];
            }
        }
        y[f * g->positions + (o0 * g->out[1] + o1) * g->out[2] + o2] = sum;
    }
}

/* One output row of FB filters: blocks of VB vectors, then single vectors, the last one overlapping
 * its neighbour (it writes the same values again) when the row is not a whole number of vectors. */
static inline __attribute__((always_inline)) void
SUF(forward_row)(const DirectJob *job, const T *x, const T *w, T *y, Py_ssize_t o0, Py_ssize_t o1,
                 const int FB, const int VB)
{
    const Py_ssize_t width = job->g.out[2];
    if (width < VW) {
        SUF(forward_values)(job, x, w, y, FB, o0, o1, 0, width);
        return;
    }
    Py_ssize_t a = 0;
    for (; a + VB * VW <= width; a += VB * VW) SUF(forward_block)(job, x, w, y, o0, o1, a, FB, VB);
    for (; a + VW <= width; a += VW) SUF(forward_block)(job, x, w, y, o0, o1, a, FB, 1);
    if (a < width) SUF(forward_block)(job, x, w, y, o0, o1, width - VW, FB, 1);
}

/*
 * Stride 1 along the last two axes (DirectJob.flat > 0): slice o0 of the output as one flat row of
 * pitch P2, so that a window's row k1 and column k2 are one offset, k1*d1*P2 + k2*d2, from the
 * flat output index j. FB filters x VB*VW values from j into `out` (flat values per filter);
 * the columns past O2 of each row are computed and thrown away (forward_flat copies the rest).
 */
static inline __attribute__((always_inline)) void
SUF(flat_block)(const DirectJob *job, const T *xs, const T *w, T *out, Py_ssize_t j, const int FB, const int VB)
{
    const Geometry *g = &job->g;
    const Py_ssize_t P0 = job->padded[0], P1 = job->padded[1], P2 = job->pitch; /* the stride is 1 */
    const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2];
    const Py_ssize_t d2 = g->dilation[2], taps = g->taps, wstride = job->cg * taps;
    V acc[4][4];
    for (int fb = 0; fb < FB; fb++)
        for (int vb = 0; vb < VB; vb++) acc[fb][vb] = (V){0};
    for (Py_ssize_t c = 0; c < job->cg; c++)
    for (Py_ssize_t k0 = 0; k0 < K0; k0++)
    for (Py_ssize_t k1 = 0; k1 < K1; k1++) {
        const T *row = xs + ((c * P0 + k0 * g->dilation[0]) * P1 + k1 * g->dilation[1]) * P2 + j;
        const T *wt = w + c * taps + (k0 * K1 + k1) * K2;
        for (Py_ssize_t k2 = 0; k2 < K2; k2++) {
            for (int vb = 0; vb < VB; vb++) {
                V xv;
                SUF(load)(&xv, row + k2 * d2 + vb * VW, 1);
                for (int fb = 0; fb < FB; fb++) acc[fb][vb] += wt[fb * wstride + k2] * xv;
            }
        }
    }
    for (int fb = 0; fb < FB; fb++)
        for (int vb = 0; vb < VB; vb++) memcpy(out + fb * job->flat + j + vb * VW, &acc[fb][vb], sizeof(V));
}

/* Slice o0 of FB filters' output (at y, filter f0's plane) through flat_block, then its rows' O2
 * values copied out. */
static inline __attribute__((always_inline)) void
SUF(forward_flat)(const DirectJob *job, const T *xg, const T *w, T *y, T *out, Py_ssize_t o0, const int FB, const int VB)
{
    const Geometry *g = &job->g;
    const T *xs = xg + o0 * g->stride[0] * job->padded[1] * job->pitch;
    Py_ssize_t j = 0;
    for (; j + VB * VW <= job->flat; j += VB * VW) SUF(flat_block)(job, xs, w, out, j, FB, VB);
    for (; j < job->flat; j += VW) SUF(flat_block)(job, xs, w, out, j, FB, 1); /* flat: whole vectors */
    for (int fb = 0; fb < FB; fb++)
        for (Py_ssize_t o1 = 0; o1 < g->out[1]; o1++) {
            memcpy(y + fb * g->positions + (o0 * g->out[1] + o1) * g->out[2], out + fb * job->flat + o1 * job->pitch,
                   (size_t)g->out[2] * sizeof(T));
        }
}

static void
SUF(forward_items)(const DirectJob *job, Py_ssize_t begin, Py_ssize_t end, void *scratch)
{
    const Geometry *g = &job->g;
    const T *x = (const T *)job->a, *w = (const T *)job->b;
    T *y = (T *)job->out;
    const Py_ssize_t cg = job->cg, fg = job->fg, plane = g->input_len / g->channels;
    for (Py_ssize_t item = begin; item < end; item++) {
        Py_ssize_t n = item / job->groups, group = item % job->groups;
        const T *xg = SUF(padded_planes)(job, x + (n * g->channels + group * cg) * plane, cg, (T *)scratch);
        T *out = (T *)scratch + cg * job->padded[0] * job->padded[1] * job->pitch + job->slack;
        for (Py_ssize_t f0 = 0; f0 < fg;) {
            Py_ssize_t f = group * fg + f0, left = fg - f0;
            const T *wf = w + f * cg * g->taps;
            T *yf = y + (n * job->filters + f) * g->positions;
            if (job->flat) {
                for (Py_ssize_t o0 = 0; o0 < g->out[0]; o0++) {
                    if (left >= 4) SUF(forward_flat)(job, xg, wf, yf, out, o0, 4, 2);
                    else if (left >= 2) SUF(forward_flat)(job, xg, wf, yf, out, o0, 2, 2);
                    else SUF(forward_flat)(job, xg, wf, yf, out, o0, 1, 4);
                }
                f0 += left >= 4 ? 4 : left >= 2 ? 2 : 1;
                continue;
            }
            for (Py_ssize_t o0 = 0; o0 < g->out[0]; o0++)
            for (Py_ssize_t o1 = 0; o1 < g->out[1]; o1++) {
                if (left >= 4) SUF(forward_row)(job, xg, wf, yf, o0, o1, 4, 2);
                else if (left >= 2) SUF(forward_row)(job, xg, wf, yf, o0, o1, 2, 2);
                else SUF(forward_row)(job, xg, wf, yf, o0, o1, 1, 4);
            }
            f0 += left >= 4 ? 4 : left >= 2 ? 2 : 1;
        }
    }
}

/* dx[n, c] = sum over the group's filters f and taps of w[f, c, tap] * dy[n, f, o], scattered to
 * the input index o*s + tap*d - p of each output position whose window reads it. */
static void
SUF(input_grad_items)(const DirectJob *job, Py_ssize_t begin, Py_ssize_t end, void *scratch)
{
    (void)scratch;
    const Geometry *g = &job->g;
    const T *dy = (const T *)job->a, *w = (const T *)job->b;
    T *dx = (T *)job->out;
    const Py_ssize_t cg = job->cg, fg = job->fg, plane = g->input_len / g->channels;
    const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2];
    const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2];
    const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2], s2 = g->stride[2];
    for (Py_ssize_t item = begin; item < end; item++) {
        Py_ssize_t n = item / g->channels, c = item % g->channels, group = c / cg;
        T *dxc = dx + item * plane;
        memset(dxc, 0, (size_t)plane * sizeof(T));
        for (Py_ssize_t fi = 0; fi < fg; fi++) {
            Py_ssize_t f = group * fg + fi;
            const T *dyf = dy + (n * job->filters + f) * g->positions;
            const T *wf = w + (f * cg + c % cg) * g->taps;
            for (Py_ssize_t o0 = 0; o0 < O0; o0++)
            for (Py_ssize_t k0 = 0; k0 < K0; k0++) {
                Py_ssize_t i0 = o0 * g->stride[0] + k0 * g->dilation[0] - g->pad[0];
                if (i0 < 0 || i0 >= S0) continue;
                for (Py_ssize_t o1 = 0; o1 < O1; o1++)
                for (Py_ssize_t k1 = 0; k1 < K1; k1++) {
                    Py_ssize_t i1 = o1 * g->stride[1] + k1 * g->dilation[1] - g->pad[1];
                    if (i1 < 0 || i1 >= S1) continue;
                    const T *src = dyf + (o0 * O1 + o1) * O2;
                    T *dst = dxc + (i0 * S1 + i1) * S2;
                    for (Py_ssize_t k2 = 0; k2 < K2; k2++) {
                        const T wv = wf[(k0 * K1 + k1) * K2 + k2];
                        Py_ssize_t off = k2 * g->dilation[2] - g->pad[2], lo, hi;
                        valid_range(S2, O2, s2, off, &lo, &hi);
                        if (s2 == 1) { /* d[j] is input column lo + off + j, read by output column lo + j */
                            T *restrict d = dst + lo + off;
                            const T *restrict e = src + lo;
                            for (Py_ssize_t j = 0; j < hi - lo; j++) d[j] += wv * e[j];
                        } else {
                            for (Py_ssize_t o2 = lo; o2 < hi; o2++) dst[o2 * s2 + off] += wv * src[o2];
                        }
                    }
                }
            }
        }
    }
}

/* sums[t] += the dot product of a and b + t*shift over n values (n a multiple of VW), for the G
 * taps t < G (always inlined with a constant G: one load of a serves them all). */
static inline __attribute__((always_inline)) void
SUF(dot)(V *sums, const T *a, const T *b, Py_ssize_t shift, Py_ssize_t n, const int G)
{
    V acc[3] = {{0}}, av, bv;
    for (Py_ssize_t j = 0; j < n; j += VW) {
        SUF(load)(&av, a + j, 1);
        for (int t = 0; t < G; t++) {
            SUF(load)(&bv, b + t * shift + j, 1);
            acc[t] += av * bv;
        }
    }
    for (int t = 0; t < G; t++) sums[t] += acc[t];
}

/*
 * dw[f, c, tap] = sum over samples and output positions of dy[n, f, o] * x[n, c, o*s + tap*d - p].
 * Stride 1 on every axis (DirectJob.flat_dy > 0): per sample and slice o0, x's padded plane (row
 * pitch P2, DirectJob.slack zeros after it) and dY's slice laid out with the same pitch (zeros past
 * each row's O2 values, flat_dy values in all) make each tap's sum one contiguous dot product, x
 * read from the tap's offset (k1*d1*P2 + k2*d2 into the slice). Other strides, and planes holding
 * an infinity or NaN: row by row. Per sample, each tap's sum is added to its vector in `sums`.
 */
static void
SUF(weight_grad_items)(const DirectJob *job, Py_ssize_t begin, Py_ssize_t end, void *scratch)
{
    const Geometry *g = &job->g;
    const T *x = (const T *)job->a, *dy = (const T *)job->b;
    T *dw = (T *)job->out;
    const Py_ssize_t cg = job->cg, fg = job->fg, plane = g->input_len / g->channels, taps = g->taps;
    const Py_ssize_t P0 = job->padded[0], P1 = job->padded[1], P2 = job->pitch; /* the padded copy's row length */
    const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2];
    const Py_ssize_t K0 = g->kernel[0], K1 = g->kernel[1], K2 = g->kernel[2], d2 = g->dilation[2];
    const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2], s2 = g->stride[2];
    /* the scratch: cg*taps sum vectors, dY's O0 slices with pitch P2 (flat), x's padded plane */
    V *sums = (V *)scratch;
    T *flat_dy = (T *)(sums + cg * taps);
    T *padded = flat_dy + O0 * job->flat;
    for (Py_ssize_t f = begin; f < end; f++) {
        Py_ssize_t group = f / fg;
        for (Py_ssize_t t = 0; t < cg * taps; t++) sums[t] = (V){0};
        for (Py_ssize_t n = 0; n < g->batch; n++) {
            const T *dyf = dy + (n * job->filters + f) * g->positions;
            if (job->flat) { /* dY(n, f) laid out once for all the group's channels */
                memset(flat_dy, 0, (size_t)(O0 * job->flat) * sizeof(T));
                for (Py_ssize_t o0 = 0; o0 < O0; o0++)
                for (Py_ssize_t o1 = 0; o1 < O1; o1++) {
                    memcpy(flat_dy + o0 * job->flat + o1 * P2, dyf + (o0 * O1 + o1) * O2, (size_t)O2 * sizeof(T));
                }
            }
            for (Py_ssize_t ci = 0; ci < cg; ci++) {
                const T *xn = x + (n * g->channels + group * cg + ci) * plane;
                V *sum = sums + ci * taps;
                /* the flat sums multiply dY's zeros with x values no window of that tap reads: exact
                 * only when those are finite (0 * inf is NaN), so a plane with any is summed by rows */
                int flat = job->flat > 0 && SUF(all_finite)(xn, plane);
                const T *xc;
                if (flat) { /* a padded copy even without padding: the sums read past the plane's end */
                    memset(padded, 0, (size_t)(P0 * P1 * P2 + job->slack) * sizeof(T));
                    for (Py_ssize_t i0 = 0; i0 < S0; i0++)
                    for (Py_ssize_t i1 = 0; i1 < S1; i1++) {
                        memcpy(padded + ((i0 + g->pad[0]) * P1 + i1 + g->pad[1]) * P2 + g->pad[2],
                               xn + (i0 * S1 + i1) * S2, (size_t)S2 * sizeof(T));
                    }
                    xc = padded;
                } else {
                    xc = SUF(padded_planes)(job, xn, 1, padded);
                }
                for (Py_ssize_t o0 = 0; o0 < O0; o0++)
                for (Py_ssize_t k0 = 0; k0 < K0; k0++)
                for (Py_ssize_t k1 = 0; k1 < K1; k1++) {
                    const T *xs = xc + ((o0 * g->stride[0] + k0 * g->dilation[0]) * P1 + k1 * g->dilation[1]) * P2;
                    V *tap = sum + (k0 * K1 + k1) * K2;
                    if (flat) { /* three taps along the last axis share each load of dY */
                        const T *d = flat_dy + o0 * job->flat;
                        Py_ssize_t k2 = 0;
                        for (; k2 + 3 <= K2; k2 += 3) SUF(dot)(tap + k2, d, xs + k2 * d2, d2, job->flat, 3);
                        for (; k2 < K2; k2++) SUF(dot)(tap + k2, d, xs + k2 * d2, d2, job->flat, 1);
                        continue;
                    }
                    for (Py_ssize_t k2 = 0; k2 < K2; k2++) {
                        V acc = {0}, dv, xv;
                        Py_ssize_t off = k2 * d2, column = off % s2 * job->phase + off / s2;
                        for (Py_ssize_t o1 = 0; o1 < O1; o1++) {
                            const T *d = dyf + (o0 * O1 + o1) * O2;
                            /* output column o2 reads r[o2] (rows by phase) */
                            const T *r = xs + o1 * g->stride[1] * P2 + column;
                            Py_ssize_t o2 = 0;
                            for (; o2 + VW <= O2; o2 += VW) {
                                SUF(load)(&dv, d + o2, 1);
                                SUF(load)(&xv, r + o2, 1);
                                acc += dv * xv;
                            }
                            if (o2 < O2) {
                                SUF(load_part)(&dv, d + o2, 1, O2 - o2);
                                SUF(load_part)(&xv, r + o2, 1, O2 - o2);
                                acc += dv * xv;
                            }
                        }
                        tap[k2] += acc;
                    }
                }
            }
        }
        for (Py_ssize_t t = 0; t < cg * taps; t++) {
            T total = 0;
            for (int j = 0; j < VW; j++) total += sums[t][j];
            dw[f * cg * taps + t] = total;
        }
    }
}

static void
SUF(run_items)(const DirectJob *job, Py_ssize_t begin, Py_ssize_t end, void *scratch)
{
    if (job->which == DIRECT_FORWARD) SUF(forward_items)(job, begin, end, scratch);
    else if (job->which == DIRECT_INPUT_GRAD) SUF(input_grad_items)(job, begin, end, scratch);
    else SUF(weight_grad_items)(job, begin, end, scratch);
}
