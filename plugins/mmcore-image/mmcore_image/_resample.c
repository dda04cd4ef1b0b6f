/*
 * Pillow-exact separable resampling of 8-bit RGB images, computing only a window of the output.
 *
 * The result equals `Image.resize((out_w, out_h), filter)` followed by cropping the window, bit
 * for bit: the filter coefficients are computed with the same double-precision formulas as
 * Pillow's Resample.c, rounded to the same 22-bit fixed point, and applied in the same order
 * (horizontal pass to 8 bits, then vertical pass to 8 bits). Integer sums are exact, so the order
 * of the additions does not matter and the inner loops are free to be vectorised.
 *
 * Only the output window is computed (a centre crop after a resize skips the cropped-off
 * columns and rows), and the result can be written straight out as planar float32 through a
 * per-channel 256-entry table (rescale and normalisation fused into the last pass).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIXED_BITS 22 /* Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2 */
#define CHANNELS 3
#define TILE_ROWS 8 /* rows per horizontal-pass tile: 8 rows x 3 channels = 24 int32 lanes */
#define TILE_LANES (TILE_ROWS * CHANNELS)

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HOT_LOOP __attribute__((target_clones("avx2", "default")))
#else
#define HOT_LOOP
#endif

/* ---- filters (the same formulas and constants as Pillow) ---- */

typedef double (*filter_fn)(double);

static double filter_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double filter_lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

typedef struct {
    const char *name;
    filter_fn fn;
    double support;
} filter_t;

static const filter_t FILTERS[] = {
    {"box", filter_box, 0.5},
    {"bilinear", filter_bilinear, 1.0},
    {"hamming", filter_hamming, 1.0},
    {"bicubic", filter_bicubic, 2.0},
    {"lanczos", filter_lanczos, 3.0},
};

/* ---- coefficients ---- */

/* One axis: for each output index, the first input index, the tap count, and fixed-point taps. */
typedef struct {
    int ksize;
    int *first; /* [out_size] */
    int *count; /* [out_size] */
    int32_t *taps; /* [out_size * ksize] */
} axis_t;

static void axis_free(axis_t *axis) {
    free(axis->first);
    free(axis->count);
    free(axis->taps);
    axis->first = axis->count = NULL;
    axis->taps = NULL;
}

/* Coefficients for resizing `in_size` -> `out_size` over the whole input (Pillow's box 0..in_size). */
static int axis_init(axis_t *axis, int in_size, int out_size, const filter_t *filter) {
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = filter->support * filterscale;
    double ss = 1.0 / filterscale;
    axis->ksize = (int)ceil(support) * 2 + 1;
    axis->first = malloc(sizeof(int) * (size_t)out_size);
    axis->count = malloc(sizeof(int) * (size_t)out_size);
    axis->taps = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)axis->ksize);
    double *weights = malloc(sizeof(double) * (size_t)axis->ksize);
    if (!axis->first || !axis->count || !axis->taps || !weights) {
        free(weights);
        axis_free(axis);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double total = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double w = filter->fn((x + xmin - center + 0.5) * ss);
            weights[x] = w;
            total += w;
        }
        int32_t *k = axis->taps + (size_t)xx * axis->ksize;
        for (int x = 0; x < axis->ksize; x++) {
            double w = x < xmax ? (total != 0.0 ? weights[x] / total : weights[x]) : 0.0;
            k[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << FIXED_BITS)) : (int32_t)(0.5 + w * (1 << FIXED_BITS));
        }
        axis->first[xx] = xmin;
        axis->count[xx] = xmax;
    }
    free(weights);
    return 0;
}

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> FIXED_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/* ---- passes ---- */

/*
 * Horizontal pass over source rows [row0, row0 + rows): output columns [col0, col0 + cols) of the
 * full-width result, written to `dst` ([rows][cols][3], row stride dst_stride bytes). `src` column
 * 0 is input column `src_col0`.
 * Rows are processed in tiles of TILE_ROWS, transposed to [x][row * 3 + channel] int32 so that
 * one output column is a contiguous multiply-add over TILE_LANES lanes.
 */
HOT_LOOP
static void pass_horizontal(const uint8_t *src, Py_ssize_t src_stride, int src_col0, int row0, int rows,
                            const axis_t *axis, int col0, int cols, uint8_t *dst, Py_ssize_t dst_stride,
                            int32_t *tile) {
    int xlo = axis->first[col0];
    int xhi = axis->first[col0 + cols - 1] + axis->count[col0 + cols - 1];
    for (int x = col0; x < col0 + cols; x++) { /* bounds are monotone, but be safe */
        if (axis->first[x] < xlo) xlo = axis->first[x];
        if (axis->first[x] + axis->count[x] > xhi) xhi = axis->first[x] + axis->count[x];
    }
    for (int r0 = 0; r0 < rows; r0 += TILE_ROWS) {
        int n = rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS;
        for (int x = xlo; x < xhi; x++) {
            int32_t *lane = tile + (size_t)(x - xlo) * TILE_LANES;
            for (int r = 0; r < TILE_ROWS; r++) {
                const uint8_t *p = src + (Py_ssize_t)(row0 + r0 + (r < n ? r : 0)) * src_stride +
                                   (Py_ssize_t)(x - src_col0) * CHANNELS;
                lane[r * CHANNELS + 0] = p[0];
                lane[r * CHANNELS + 1] = p[1];
                lane[r * CHANNELS + 2] = p[2];
            }
        }
        for (int xx = col0; xx < col0 + cols; xx++) {
            int32_t acc[TILE_LANES];
            for (int i = 0; i < TILE_LANES; i++) acc[i] = 1 << (FIXED_BITS - 1);
            const int32_t *k = axis->taps + (size_t)xx * axis->ksize;
            const int32_t *base = tile + (size_t)(axis->first[xx] - xlo) * TILE_LANES;
            for (int t = 0; t < axis->count[xx]; t++) {
                const int32_t *lane = base + (size_t)t * TILE_LANES;
                int32_t w = k[t];
                for (int i = 0; i < TILE_LANES; i++) acc[i] += lane[i] * w;
            }
            for (int r = 0; r < n; r++) {
                uint8_t *q = dst + (Py_ssize_t)(r0 + r) * dst_stride + (Py_ssize_t)(xx - col0) * CHANNELS;
                q[0] = clip8(acc[r * CHANNELS + 0]);
                q[1] = clip8(acc[r * CHANNELS + 1]);
                q[2] = clip8(acc[r * CHANNELS + 2]);
            }
        }
    }
}

/* Emits one 8-bit output row: as 8-bit pixels to `dst`, or through `table` to planar float32. */
static inline void emit_row(const uint8_t *pixels, int row, int rows, int width, uint8_t *dst, const float *table,
                            float *planes) {
    if (!table) {
        memcpy(dst + (size_t)row * width * CHANNELS, pixels, (size_t)width * CHANNELS);
        return;
    }
    size_t plane = (size_t)rows * width;
    for (int c = 0; c < CHANNELS; c++) {
        const float *t = table + 256 * c;
        float *out = planes + plane * c + (size_t)row * width;
        for (int x = 0; x < width; x++) out[x] = t[pixels[x * CHANNELS + c]];
    }
}

/*
 * Vertical pass: output rows [row0, row0 + rows) of the full-height result, `width` pixels wide,
 * from `src` whose row 0 is input row `src_row0`.
 */
HOT_LOOP
static void pass_vertical(const uint8_t *src, Py_ssize_t src_stride, int src_row0, const axis_t *axis, int row0,
                          int rows, int width, uint8_t *dst, const float *table, float *planes, int32_t *acc,
                          uint8_t *line_out) {
    int lanes = width * CHANNELS;
    for (int yy = row0; yy < row0 + rows; yy++) {
        for (int i = 0; i < lanes; i++) acc[i] = 1 << (FIXED_BITS - 1);
        const int32_t *k = axis->taps + (size_t)yy * axis->ksize;
        for (int t = 0; t < axis->count[yy]; t++) {
            const uint8_t *line = src + (Py_ssize_t)(axis->first[yy] + t - src_row0) * src_stride;
            int32_t w = k[t];
            for (int i = 0; i < lanes; i++) acc[i] += (int32_t)line[i] * w;
        }
        for (int i = 0; i < lanes; i++) line_out[i] = clip8(acc[i]);
        emit_row(line_out, yy - row0, rows, width, dst, table, planes);
    }
}

/* ---- the whole resize of one window ---- */

typedef struct {
    const uint8_t *src;
    int in_h, in_w;
    int out_h, out_w;
    int y0, x0, h, w; /* the window of the resized image to produce */
    const filter_t *filter;
    int vertical_first; /* pass order (Pillow 13 runs the vertical pass first for strong height reductions) */
    uint8_t *dst; /* [h][w][3] uint8, when table is NULL */
    const float *table; /* [3][256] float32 or NULL */
    float *planes; /* [3][h][w] float32, when table is given */
} job_t;

/* [lo, hi): the input indices output indices [first, first + n) read. */
static void axis_span(const axis_t *axis, int first, int n, int *lo, int *hi) {
    *lo = axis->first[first];
    *hi = 0;
    for (int i = first; i < first + n; i++) {
        if (axis->first[i] < *lo) *lo = axis->first[i];
        if (axis->first[i] + axis->count[i] > *hi) *hi = axis->first[i] + axis->count[i];
    }
}

/* Horizontal pass first (Pillow's usual order); the vertical pass writes the output. */
static int run_horizontal_first(const job_t *job, const axis_t *ax, const axis_t *ay, int32_t *tile, int32_t *acc,
                                uint8_t *line) {
    int need_h = ax->taps != NULL, need_v = ay->taps != NULL;
    Py_ssize_t src_stride = (Py_ssize_t)job->in_w * CHANNELS;
    int row_lo = job->y0, row_hi = job->y0 + job->h;
    if (need_v) axis_span(ay, job->y0, job->h, &row_lo, &row_hi);
    const uint8_t *stage = job->src + (Py_ssize_t)job->x0 * CHANNELS; /* window columns */
    Py_ssize_t stage_stride = src_stride;
    int stage_row0 = 0;
    uint8_t *temp = NULL;
    if (need_h) {
        temp = malloc((size_t)(row_hi - row_lo) * job->w * CHANNELS);
        if (!temp) return -1;
        pass_horizontal(job->src, src_stride, 0, row_lo, row_hi - row_lo, ax, job->x0, job->w, temp,
                        (Py_ssize_t)job->w * CHANNELS, tile);
        stage = temp;
        stage_stride = (Py_ssize_t)job->w * CHANNELS;
        stage_row0 = row_lo;
    }
    if (need_v) {
        pass_vertical(stage, stage_stride, stage_row0, ay, job->y0, job->h, job->w, job->dst, job->table,
                      job->planes, acc, line);
    } else {
        for (int r = 0; r < job->h; r++)
            emit_row(stage + (Py_ssize_t)(job->y0 + r - stage_row0) * stage_stride, r, job->h, job->w, job->dst,
                     job->table, job->planes);
    }
    free(temp);
    return 0;
}

/* Vertical pass first, over only the columns the window's horizontal taps read; then horizontal. */
static int run_vertical_first(const job_t *job, const axis_t *ax, const axis_t *ay, int32_t *tile) {
    Py_ssize_t src_stride = (Py_ssize_t)job->in_w * CHANNELS;
    int col_lo, col_hi;
    axis_span(ax, job->x0, job->w, &col_lo, &col_hi);
    int cols = col_hi - col_lo;
    uint8_t *temp = malloc((size_t)job->h * cols * CHANNELS);
    uint8_t *out = malloc((size_t)job->h * job->w * CHANNELS);
    int32_t *wide_acc = malloc(sizeof(int32_t) * (size_t)cols * CHANNELS);
    uint8_t *wide_line = malloc((size_t)cols * CHANNELS);
    int status = -1;
    if (!temp || !out || !wide_acc || !wide_line) goto done;
    pass_vertical(job->src + (Py_ssize_t)col_lo * CHANNELS, src_stride, 0, ay, job->y0, job->h, cols, temp, NULL,
                  NULL, wide_acc, wide_line);
    pass_horizontal(temp, (Py_ssize_t)cols * CHANNELS, col_lo, 0, job->h, ax, job->x0, job->w, out,
                    (Py_ssize_t)job->w * CHANNELS, tile);
    for (int r = 0; r < job->h; r++)
        emit_row(out + (size_t)r * job->w * CHANNELS, r, job->h, job->w, job->dst, job->table, job->planes);
    status = 0;
done:
    free(temp);
    free(out);
    free(wide_acc);
    free(wide_line);
    return status;
}

/* Runs `job`; returns 0, or -1 when memory ran out. Touches no Python state. */
static int run_job(const job_t *job) {
    int status = -1;
    int need_h = job->out_w != job->in_w, need_v = job->out_h != job->in_h;
    axis_t ax = {0}, ay = {0};
    int32_t *tile = NULL, *acc = NULL;
    uint8_t *line = NULL;
    if (need_h && axis_init(&ax, job->in_w, job->out_w, job->filter) != 0) goto done;
    if (need_v && axis_init(&ay, job->in_h, job->out_h, job->filter) != 0) goto done;
    tile = malloc(sizeof(int32_t) * TILE_LANES * (size_t)job->in_w);
    acc = malloc(sizeof(int32_t) * (size_t)job->w * CHANNELS);
    line = malloc((size_t)job->w * CHANNELS);
    if (!tile || !acc || !line) goto done;
    if (job->vertical_first && need_h && need_v)
        status = run_vertical_first(job, &ax, &ay, tile);
    else
        status = run_horizontal_first(job, &ax, &ay, tile, acc, line);
done:
    axis_free(&ax);
    axis_free(&ay);
    free(tile);
    free(acc);
    free(line);
    return status;
}

/* ---- Python entry point ---- */

PyDoc_STRVAR(resize_window_doc,
             "resize_window(src, in_h, in_w, out_h, out_w, filter, y0, x0, h, w, dst, table=None, vertical_first=False)\n"
             "--\n\n"
             "Write the window [y0:y0+h, x0:x0+w] of Pillow's resize of `src` (C-contiguous uint8\n"
             "[in_h, in_w, 3]) to (out_h, out_w) with `filter` into `dst`: uint8 [h, w, 3], or float32\n"
             "[3, h, w] mapped through `table` (float32 [3, 256]) when one is given. `vertical_first` picks\n"
             "the pass order when both axes change.");

static PyObject *resize_window(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"src", "in_h", "in_w", "out_h", "out_w", "filter", "y0", "x0", "h", "w", "dst",
                               "table", "vertical_first", NULL};
    Py_buffer src = {0}, dst = {0}, table = {0};
    PyObject *table_obj = Py_None;
    const char *filter_name;
    job_t job = {0};
    PyObject *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iiiisiiiiw*|Op", keywords, &src, &job.in_h, &job.in_w,
                                     &job.out_h, &job.out_w, &filter_name, &job.y0, &job.x0, &job.h, &job.w, &dst,
                                     &table_obj, &job.vertical_first))
        return NULL;
    for (size_t i = 0; i < sizeof(FILTERS) / sizeof(FILTERS[0]); i++)
        if (strcmp(FILTERS[i].name, filter_name) == 0) job.filter = &FILTERS[i];
    if (!job.filter) {
        PyErr_Format(PyExc_ValueError, "resize_window: unknown filter %s", filter_name);
        goto done;
    }
    if (job.in_h < 1 || job.in_w < 1 || job.out_h < 1 || job.out_w < 1 || job.h < 1 || job.w < 1 || job.y0 < 0 ||
        job.x0 < 0 || job.y0 + job.h > job.out_h || job.x0 + job.w > job.out_w) {
        PyErr_SetString(PyExc_ValueError, "resize_window: sizes must be positive and the window inside the output");
        goto done;
    }
    if (!PyBuffer_IsContiguous(&src, 'C') || src.len != (Py_ssize_t)job.in_h * job.in_w * CHANNELS) {
        PyErr_SetString(PyExc_ValueError, "resize_window: src must be C-contiguous uint8 [in_h, in_w, 3]");
        goto done;
    }
    job.src = src.buf;
    if (table_obj != Py_None) {
        if (PyObject_GetBuffer(table_obj, &table, PyBUF_C_CONTIGUOUS) != 0) goto done;
        if (table.len != (Py_ssize_t)sizeof(float) * 256 * CHANNELS) {
            PyErr_SetString(PyExc_ValueError, "resize_window: table must be float32 [3, 256]");
            goto done;
        }
        if (!PyBuffer_IsContiguous(&dst, 'C') || dst.len != (Py_ssize_t)sizeof(float) * CHANNELS * job.h * job.w) {
            PyErr_SetString(PyExc_ValueError, "resize_window: dst must be C-contiguous float32 [3, h, w]");
            goto done;
        }
        job.table = table.buf;
        job.planes = dst.buf;
    } else {
        if (!PyBuffer_IsContiguous(&dst, 'C') || dst.len != (Py_ssize_t)job.h * job.w * CHANNELS) {
            PyErr_SetString(PyExc_ValueError, "resize_window: dst must be C-contiguous uint8 [h, w, 3]");
            goto done;
        }
        job.dst = dst.buf;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_job(&job);
    Py_END_ALLOW_THREADS
    if (status != 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (table.obj) PyBuffer_Release(&table);
    return result;
}

static PyMethodDef methods[] = {
    {"resize_window", (PyCFunction)(void (*)(void))resize_window, METH_VARARGS | METH_KEYWORDS, resize_window_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resample", "Pillow-exact windowed resampling of 8-bit RGB images.", -1, methods,
};

PyMODINIT_FUNC PyInit__resample(void) { return PyModule_Create(&module); }
