/*
 * Direct convolution kernels: a template included by _kernels.c once per dtype and instruction
 * set, with T (float or double), V (a GCC/Clang vector of VW T's, 32 bytes), UINT and EXPONENT
 * (T's bits and its exponent mask) and SUF(name) (the name with its dtype's and instruction set's
 * suffix) defined.
 *
 * Used for the layers a GEMM serves badly: depthwise convolutions (one input channel per group)
 * and convolutions with few filters per group (LeNet's), where im2col's matrix is prod(k) times
 * the input and the GEMM's few rows keep BLAS far from its rate. Every function here works on one
 * slice [begin, end) of independent work items, so that threads share the items with no two
 * writing one value:
 *   forward      item (n, group):  y[n, filters of the group] = sum over its channels and taps
 *   input grad   item (n, c):      dx[n, c] = sum over the group's filters and taps (scattered)
 *   weight grad  item (group, chunk of its filters): their dw, summed over samples and positions
 *
 * Forward and the weight gradient read the input through a copy of its planes in the slice's
 * scratch (padded_planes): each axis padded with zeros so that every window lies inside, and the
 * last two axes held by phase of their stride: the columns j2 with one j2 % s2 form a plane of
 * their own (`rows` rows of `pitch` = ceil(P2/s2) values, column j2 at j2/s2), and in it row j1
 * is at (j1 % s1)*row_phase + j1/s1, so that consecutive output positions read consecutive
 * values. Then a slice o0 of the output is one flat row: output position (o1, o2) is
 * j = o1*pitch + o2, and tap t reads the copy at j + DirectJob.offset[t] (the tap's column phase,
 * row and column in the slice's planes): one offset per tap, long contiguous vectors, no bounds
 * to test, and at most pitch - O2 values a row computed for nothing. The values at j with
 * o2 >= O2 are computed and thrown away (forward) or multiplied by zeros (weight gradient, which
 * therefore sums a plane holding an infinity or NaN row by row: 0 * inf is NaN). The geometry is
 * _kernels.c's, checked there (every padded extent, product and index fits a Py_ssize_t).
 */

/* *v = the VW values from p (through a pointer: a vector return value would change the ABI of the
 * baseline build). */
static inline __attribute__((always_inline)) void
SUF(load)(V *v, const T *p)
{
    memcpy(v, p, sizeof *v);
}

/* *v = the first `count` (< VW) values from p, zeros after them. */
static inline void
SUF(load_part)(V *v, const T *p, Py_ssize_t count)
{
    *v = (V){0};
    for (Py_ssize_t j = 0; j < count; j++) (*v)[j] = p[j];
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

/* Every input value of one channel's plane to (into_copy) or from its place in the copy: padded
 * row j1 = i1 + pad1 and column j2 = i2 + pad2 of padded index i0 + pad0 at
 * (i0 + pad0)*slab + ((j2 % s2)*rows + (j1 % s1)*row_phase + j1/s1)*pitch + j2/s2. The loops run
 * over the phases, then the rows and columns of each, so that no division is left inside them. */
static void
SUF(move_plane)(const DirectJob *job, T *input, T *copy, int into_copy)
{
    const Geometry *g = &job->g;
    const Py_ssize_t S0 = g->size[0], S1 = g->size[1], S2 = g->size[2], s1 = g->stride[1], s2 = g->stride[2];
    const Py_ssize_t p1 = g->pad[1], p2 = g->pad[2], pitch = job->pitch;
    for (Py_ssize_t f1 = 0; f1 < s1 && f1 < S1; f1++) { /* input rows f1, f1 + s1, ...: one phase */
        Py_ssize_t rows = (S1 - 1 - f1) / s1 + 1, j1 = f1 + p1, row0 = j1 % s1 * job->row_phase + j1 / s1;
        for (Py_ssize_t f2 = 0; f2 < s2 && f2 < S2; f2++) { /* input columns f2, f2 + s2, ...: one phase */
            Py_ssize_t count = (S2 - 1 - f2) / s2 + 1, j2 = f2 + p2;
            Py_ssize_t first = (j2 % s2 * job->rows + row0) * pitch + j2 / s2; /* in its slab */
            for (Py_ssize_t i0 = 0; i0 < S0; i0++)
            for (Py_ssize_t m = 0; m < rows; m++) {
                T *in = input + (i0 * S1 + f1 + m * s1) * S2 + f2;
                T *cp = copy + (i0 + g->pad[0]) * job->slab + first + m * pitch;
                if (s2 == 1) memcpy(into_copy ? cp : in, into_copy ? in : cp, (size_t)count * sizeof(T));
                else if (into_copy) for (Py_ssize_t q = 0; q < count; q++) cp[q] = in[q * s2];
                else for (Py_ssize_t q = 0; q < count; q++) in[q * s2] = cp[q];
            }
        }
    }
}

/* The padded copy (see the top of this file) of `channels` planes of x into `copy`, zeros around,
 * DirectJob.slack zeros after the last (the flat sums read that far past it). */
static void
SUF(padded_planes)(const DirectJob *job, const T *x, Py_ssize_t channels, T *copy)
{
    const Py_ssize_t plane = job->g.input_len / job->g.channels;
    memset(copy, 0, (size_t)(channels * job->plane + job->slack) * sizeof(T));
    for (Py_ssize_t c = 0; c < channels; c++) SUF(move_plane)(job, (T *)(x + c * plane), copy + c * job->plane, 1);
}

/*
 * FB filters x VB*VW consecutive values of a slice's flat output from index j into `out` (flat
 * values per filter): xs is the slice's first channel plane in the copy, w filter f0's weights.
 * Always inlined with constant FB and VB, so that the accumulators live in registers.
 */
static inline __attribute__((always_inline)) void
SUF(flat_block)(const DirectJob *job, const T *xs, const T *w, T *out, Py_ssize_t j, const int FB, const int VB)
{
    const Py_ssize_t taps = job->g.taps, wstride = job->cg * taps;
    const Py_ssize_t *offset = job->offset;
    V acc[4][4];
    for (int fb = 0; fb < FB; fb++)
        for (int vb = 0; vb < VB; vb++) acc[fb][vb] = (V){0};
    for (Py_ssize_t c = 0; c < job->cg; c++) {
        const T *plane = xs + c * job->plane + j;
        const T *wc = w + c * taps;
        for (Py_ssize_t t = 0; t < taps; t++) {
            const T *p = plane + offset[t];
            for (int vb = 0; vb < VB; vb++) {
                V xv;
                SUF(load)(&xv, p + vb * VW);
                for (int fb = 0; fb < FB; fb++) acc[fb][vb] += wc[fb * wstride + t] * xv;
            }
        }
    }
    for (int fb = 0; fb < FB; fb++)
        for (int vb = 0; vb < VB; vb++) memcpy(out + fb * job->flat + j + vb * VW, &acc[fb][vb], sizeof(V));
}

/* Slice o0 of FB filters' output (y: filter f0's plane at sample n) through flat_block, then each
 * row's O2 values copied out. */
static inline __attribute__((always_inline)) void
SUF(forward_slice)(const DirectJob *job, const T *xg, const T *w, T *y, T *out, Py_ssize_t o0, const int FB, const int VB)
{
    const Geometry *g = &job->g;
    const T *xs = xg + o0 * g->stride[0] * job->slab;
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
    T *copy = (T *)scratch, *out = copy + cg * job->plane + job->slack; /* up to 4 filters' flat slice */
    for (Py_ssize_t item = begin; item < end; item++) {
        Py_ssize_t n = item / job->groups, group = item % job->groups;
        SUF(padded_planes)(job, x + (n * g->channels + group * cg) * plane, cg, copy);
        for (Py_ssize_t f0 = 0; f0 < fg;) {
            Py_ssize_t f = group * fg + f0, left = fg - f0;
            const T *wf = w + f * cg * g->taps;
            T *yf = y + (n * job->filters + f) * g->positions;
            /* 3 filters by 4 vectors a block: 12 accumulators, 3 weights and a load fill AVX2's 16 registers */
            for (Py_ssize_t o0 = 0; o0 < g->out[0]; o0++) {
                if (left >= 3) SUF(forward_slice)(job, copy, wf, yf, out, o0, 3, 4);
                else if (left >= 2) SUF(forward_slice)(job, copy, wf, yf, out, o0, 2, 4);
                else SUF(forward_slice)(job, copy, wf, yf, out, o0, 1, 4);
            }
            f0 += left >= 3 ? 3 : left >= 2 ? 2 : 1;
        }
    }
}

/* `count` filters' dY planes, consecutive from d, laid out as the forward's flat output: slice o0
 * of filter fi at (fi*O0 + o0)*flat, its row o1 at o1*pitch, zeros past each row's O2 values. */
static void
SUF(flat_planes)(const DirectJob *job, const T *d, Py_ssize_t count, T *flat_dy)
{
    const Py_ssize_t O1 = job->g.out[1], O2 = job->g.out[2], slices = count * job->g.out[0];
    memset(flat_dy, 0, (size_t)(slices * job->flat) * sizeof(T));
    for (Py_ssize_t r = 0; r < slices; r++) /* slice r = fi*O0 + o0, consecutive in d as well */
    for (Py_ssize_t o1 = 0; o1 < O1; o1++) {
        memcpy(flat_dy + r * job->flat + o1 * job->pitch, d + (r * O1 + o1) * O2, (size_t)O2 * sizeof(T));
    }
}

/*
 * dx[n, c] = sum over the group's filters f and taps t of w[f, c, t] * dy[n, f, o], scattered to
 * the input position each output position's window reads at that tap: added into a zeroed plane
 * laid out as the padded copy (output position j = o1*pitch + o2 of slice o0, at tap t, lands at
 * o0*s0 slabs + offset[t] + j, whatever the stride), then the input's part of that plane copied
 * out to dx (the padding's share dropped, as col2im drops it). A filter's dY is laid out flat as
 * the forward's output (zeros past each row's O2 values), so that each tap is one contiguous
 * multiply-add over the slice; the zeros land, times the weight, on values no window of that tap
 * reads, which leaves them unchanged for a finite weight: a filter with an infinite or NaN weight
 * is scattered row by row instead (0 * inf is NaN).
 */
static void
SUF(input_grad_items)(const DirectJob *job, Py_ssize_t begin, Py_ssize_t end, void *scratch)
{
    const Geometry *g = &job->g;
    const T *dy = (const T *)job->a, *w = (const T *)job->b;
    T *dx = (T *)job->out, *acc = (T *)scratch, *flat_dy = acc + job->plane + job->slack;
    const Py_ssize_t cg = job->cg, fg = job->fg, plane = g->input_len / g->channels, taps = g->taps;
    const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2], pitch = job->pitch, flat = job->flat;
    const Py_ssize_t *offset = job->offset;
    for (Py_ssize_t item = begin; item < end; item++) {
        Py_ssize_t n = item / g->channels, c = item % g->channels, group = c / cg;
        memset(acc, 0, (size_t)(job->plane + job->slack) * sizeof(T));
        for (Py_ssize_t fi = 0; fi < fg; fi++) {
            Py_ssize_t f = group * fg + fi;
            const T *dyf = dy + (n * job->filters + f) * g->positions;
            const T *wf = w + (f * cg + c % cg) * taps;
            if (SUF(all_finite)(wf, taps)) {
                SUF(flat_planes)(job, dyf, 1, flat_dy);
                for (Py_ssize_t o0 = 0; o0 < O0; o0++) {
                    const T *d = flat_dy + o0 * flat;
                    T *base = acc + o0 * g->stride[0] * job->slab;
                    for (Py_ssize_t t = 0; t < taps; t++) {
                        const V wv = (V){0} + wf[t];
                        T *a = base + offset[t];
                        for (Py_ssize_t j = 0; j < flat; j += VW) {
                            V av, dv;
                            SUF(load)(&av, a + j);
                            SUF(load)(&dv, d + j);
                            av += wv * dv;
                            memcpy(a + j, &av, sizeof av);
                        }
                    }
                }
                continue;
            }
            for (Py_ssize_t o0 = 0; o0 < O0; o0++)
            for (Py_ssize_t o1 = 0; o1 < O1; o1++) {
                const T *restrict src = dyf + (o0 * O1 + o1) * O2;
                T *base = acc + o0 * g->stride[0] * job->slab + o1 * pitch;
                for (Py_ssize_t t = 0; t < taps; t++) {
                    const T wv = wf[t];
                    T *restrict d = base + offset[t];
                    for (Py_ssize_t o2 = 0; o2 < O2; o2++) d[o2] += wv * src[o2];
                }
            }
        }
        SUF(move_plane)(job, dx + item * plane, acc, 0); /* the input's values, laid out as the copy */
    }
}

/* For the FB filters' dY slices d, d + d_stride, ... and the G <= 3 taps' copies b[t], over n values
 * (a multiple of VW): sums[fb * sum_stride + t] += the dot product of filter fb's slice with tap t's.
 * Always inlined with constant FB and G: FB*G accumulators in registers, FB + G loads per FB*G
 * multiply-adds; each sum's products are added in the same order whatever FB and G. */
static inline __attribute__((always_inline)) void
SUF(dot_block)(V *sums, Py_ssize_t sum_stride, const T *d, Py_ssize_t d_stride, const T *const *b, Py_ssize_t n,
               const int FB, const int G)
{
    V acc[4][3], x0, x1 = {0}, x2 = {0}, dv;
    const T *b0 = b[0], *b1 = b[G > 1 ? 1 : 0], *b2 = b[G > 2 ? 2 : 0];
    for (int fb = 0; fb < FB; fb++)
        for (int t = 0; t < G; t++) acc[fb][t] = (V){0};
    for (Py_ssize_t j = 0; j < n; j += VW) {
        /* named, not an array: GCC copied an array of loaded vectors through the stack */
        SUF(load)(&x0, b0 + j);
        if (G > 1) SUF(load)(&x1, b1 + j);
        if (G > 2) SUF(load)(&x2, b2 + j);
        for (int fb = 0; fb < FB; fb++) {
            SUF(load)(&dv, d + fb * d_stride + j);
            acc[fb][0] += dv * x0;
            if (G > 1) acc[fb][1] += dv * x1;
            if (G > 2) acc[fb][2] += dv * x2;
        }
    }
    for (int fb = 0; fb < FB; fb++)
        for (int t = 0; t < G; t++) sums[fb * sum_stride + t] += acc[fb][t];
}

/* dot_block for every tap, three at a time (FB constant; filter fb's slice at d + fb * O0 * flat). */
static inline __attribute__((always_inline)) void
SUF(dot_taps)(const DirectJob *job, V *sums, Py_ssize_t sum_stride, const T *d, const T *xs, const int FB)
{
    const Py_ssize_t taps = job->g.taps, flat = job->flat, d_stride = job->g.out[0] * flat, *offset = job->offset;
    Py_ssize_t t = 0;
    for (; t + 3 <= taps; t += 3) {
        const T *b[3] = {xs + offset[t], xs + offset[t + 1], xs + offset[t + 2]};
        SUF(dot_block)(sums + t, sum_stride, d, d_stride, b, flat, FB, 3);
    }
    for (; t < taps; t++) {
        const T *b[1] = {xs + offset[t]};
        SUF(dot_block)(sums + t, sum_stride, d, d_stride, b, flat, FB, 1);
    }
}

/*
 * dw[f, c, tap] = sum over samples and output positions of dy[n, f, o] * x[n, c, o*s + tap*d - p].
 * An item is a chunk of DirectJob.fchunk filters of one group (the last chunk of a group may be
 * shorter). Per sample, the chunk's dY slices are laid out as the flat output (pitch
 * DirectJob.pitch, zeros past each row's O2 values), then each of the group's channel planes is
 * copied once and every tap's sum is one contiguous dot product of a filter's slice with the copy
 * at the tap's offset: four filters by three taps per pass over the values. A plane holding an
 * infinity or NaN is summed row by row instead (the flat sums would multiply it by dY's zeros).
 * Each filter's, channel's and tap's sum is a vector in `sums`, added to sample after sample, so
 * that neither the chunking nor the thread count changes a bit of dw.
 */
static void
SUF(weight_grad_items)(const DirectJob *job, Py_ssize_t begin, Py_ssize_t end, void *scratch)
{
    const Geometry *g = &job->g;
    const T *x = (const T *)job->a, *dy = (const T *)job->b;
    T *dw = (T *)job->out;
    const Py_ssize_t cg = job->cg, fg = job->fg, plane = g->input_len / g->channels, taps = g->taps;
    const Py_ssize_t O0 = g->out[0], O1 = g->out[1], O2 = g->out[2], pitch = job->pitch, flat = job->flat;
    const Py_ssize_t chunks = (fg + job->fchunk - 1) / job->fchunk, per_filter = cg * taps;
    /* the scratch: fchunk*cg*taps sum vectors, the chunk's dY laid out, the copy of one plane */
    V *sums = (V *)scratch;
    T *flat_dy = (T *)(sums + job->fchunk * per_filter);
    T *copy = flat_dy + job->fchunk * O0 * flat;
    for (Py_ssize_t item = begin; item < end; item++) {
        Py_ssize_t group = item / chunks, within = item % chunks * job->fchunk; /* the chunk's first filter in its group */
        Py_ssize_t first = group * fg + within, count = fg - within < job->fchunk ? fg - within : job->fchunk;
        for (Py_ssize_t t = 0; t < count * per_filter; t++) sums[t] = (V){0};
        for (Py_ssize_t n = 0; n < g->batch; n++) {
            SUF(flat_planes)(job, dy + (n * job->filters + first) * g->positions, count, flat_dy);
            for (Py_ssize_t ci = 0; ci < cg; ci++) {
                const T *xn = x + (n * g->channels + group * cg + ci) * plane;
                int finite = SUF(all_finite)(xn, plane);
                SUF(padded_planes)(job, xn, 1, copy);
                for (Py_ssize_t o0 = 0; o0 < O0; o0++) {
                    const T *xs = copy + o0 * g->stride[0] * job->slab;
                    if (finite) { /* count <= 4 filters: 4, or 2 then 2 or 1, or 1 */
                        for (Py_ssize_t fi = 0, block; fi < count; fi += block) {
                            V *sum = sums + fi * per_filter + ci * taps;
                            const T *d = flat_dy + (fi * O0 + o0) * flat;
                            block = count - fi >= 4 ? 4 : count - fi >= 2 ? 2 : 1;
                            if (block == 4) SUF(dot_taps)(job, sum, per_filter, d, xs, 4);
                            else if (block == 2) SUF(dot_taps)(job, sum, per_filter, d, xs, 2);
                            else SUF(dot_taps)(job, sum, per_filter, d, xs, 1);
                        }
                        continue;
                    }
                    for (Py_ssize_t fi = 0; fi < count; fi++)
                    for (Py_ssize_t t = 0; t < taps; t++) { /* row by row: only the windows' values */
                        const T *d = flat_dy + (fi * O0 + o0) * flat;
                        V acc = {0}, dv, xv;
                        for (Py_ssize_t o1 = 0; o1 < O1; o1++) {
                            const T *drow = d + o1 * pitch, *xrow = xs + job->offset[t] + o1 * pitch;
                            Py_ssize_t o2 = 0;
                            for (; o2 + VW <= O2; o2 += VW) {
                                SUF(load)(&dv, drow + o2);
                                SUF(load)(&xv, xrow + o2);
                                acc += dv * xv;
                            }
                            if (o2 < O2) {
                                SUF(load_part)(&dv, drow + o2, O2 - o2);
                                SUF(load_part)(&xv, xrow + o2, O2 - o2);
                                acc += dv * xv;
                            }
                        }
                        sums[fi * per_filter + ci * taps + t] += acc;
                    }
                }
            }
        }
        for (Py_ssize_t t = 0; t < count * per_filter; t++) {
            T total = 0;
            for (int j = 0; j < VW; j++) total += sums[t][j];
            dw[first * per_filter + t] = total;
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
