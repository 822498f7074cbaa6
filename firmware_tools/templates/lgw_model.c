
/* ---- Model encoder (docs/codec.md): integer predictor, context tables, 32-bit range coder ---- */

/* floor(v / 2^s): an arithmetic shift that does not rely on implementation-defined >> of negatives. */
static int64_t lgw_asr(int64_t v, int s) {
    return v >= 0 ? (int64_t)((uint64_t)v >> s) : -(int64_t)((uint64_t)(-(v + 1)) >> s) - 1;
}

#if LGW_HAS_GRID || LGW_HAS_VMAP
/* floor(a / b) for b > 0 (C's / truncates towards zero). */
static int64_t lgw_floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b) != 0 && a < 0) q--;
    return q;
}
#endif

/* For helpers kept out of lgw_encode_samples: inlined, their 64-bit temporaries would enlarge the
   frame of the function at the root of the deepest call path (the stack budget is 512 bytes),
   while called they return before that path goes deeper. */
#if defined(__GNUC__)
#define LGW_NOINLINE __attribute__((noinline))
#else
#define LGW_NOINLINE
#endif

#if LGW_HAS_PMODE
/* PMODE_SNAP: a predicted change rounded onto the residual grid g (docs/codec.md, "Samples"). */
static LGW_NOINLINE int64_t lgw_snap(int64_t delta, int64_t g) {
    return lgw_asr(lgw_floor_div(delta * 256 + g / 2, g) * g + 128, 8);
}

/* PMODE_LATTICE_PHASE: ((256 pred + m g) mod g) * 4 / g, floor modulo. */
static LGW_NOINLINE int lgw_lattice_phase(int64_t pred, int64_t m, int64_t g) {
    int64_t u = pred * 256 + m * g;
    return (int)(((u - lgw_floor_div(u, g) * g) * 4) / g);
}
#endif

#if LGW_HAS_VMAP
/* Value lattices (bitstream revision 6, docs/codec.md "Value lattice"): lgw_vmap[5 c ..] = P, Q, D,
   mode, F. A channel with mode != 0 is coded as the index k of its reading x on the lattice
   L(k) = floor((P k + Q) / D) (mode 1) or trunc((P k + Q) / D) (mode 2, C's division), and the
   jitter j = x - L(k) follows the last sample. |x| < 2^30, D <= 2^20, 2 D <= P <= 2^24: the products
   P k and D x need int64, while k (|k| <= |x| / 2 + 2), L(k), L(k + 1) <= x + 2^24 + 1 and j fit
   int32 (which keeps the M0+'s registers free: the jitter tail sits at the end of the deepest path). */
static int32_t lgw_lattice_value(const int32_t *v, int32_t k) {
    int64_t n = (int64_t)v[0] * k + v[1];
    return (int32_t)(v[3] == 2 ? n / v[2] : lgw_floor_div(n, v[2]));
}

/* k = max{k : L(k) <= x}: floor((D x + D - 1 - Q) / P), in mode 2 for x < 0 floor((D x - Q) / P). */
static int32_t lgw_lattice_index(const int32_t *v, int32_t x) {
    int64_t d = v[2];
    if (v[3] == 0) return x;
    if (v[3] == 2 && x < 0) return (int32_t)lgw_floor_div(d * x - v[1], v[0]);
    return (int32_t)lgw_floor_div(d * x + d - 1 - v[1], v[0]);
}

/* Row x's lattice indices into k (the readings themselves on channels without a lattice). */
static LGW_NOINLINE void lgw_lattice_row(int32_t *k, const int32_t *x) {
    int i;
    for (i = 0; i < LGW_CHANNELS; i++) k[i] = lgw_lattice_index(lgw_vmap + 5 * i, x[i]);
}
#endif

typedef struct {
    uint32_t low;
    uint32_t range;
    uint8_t *out;
    int len;
    int cap;
    int full; /* 1 once a byte did not fit */
} lgw_rc_t;

static void lgw_rc_carry(lgw_rc_t *rc) {
    int i = rc->len - 1;
    while (i >= 0 && rc->out[i] == 0xFFu) rc->out[i--] = 0;
    if (i >= 0) rc->out[i]++;
}

static void lgw_rc_add(lgw_rc_t *rc, uint32_t x) {
    rc->low += x;
    if (rc->low < x) lgw_rc_carry(rc); /* bit 32 set: carry into the bytes written, drop the bit */
}

static void lgw_rc_norm(lgw_rc_t *rc) {
    while (rc->range < 0x01000000u) {
        if (rc->len < rc->cap) rc->out[rc->len++] = (uint8_t)(rc->low >> 24);
        else rc->full = 1;
        rc->low <<= 8;
        rc->range <<= 8;
    }
}

static void lgw_rc_encode(lgw_rc_t *rc, uint32_t cum, uint32_t freq) {
    uint32_t r = rc->range >> 12;
    lgw_rc_add(rc, r * cum);
    rc->range = r * freq;
    lgw_rc_norm(rc);
}

static void lgw_rc_raw(lgw_rc_t *rc, uint64_t value, int nbits) {
    while (nbits > 0) {
        int m = nbits < 16 ? nbits : 16;
        uint32_t r;
        nbits -= m;
        r = rc->range >> m;
        lgw_rc_add(rc, r * (uint32_t)((value >> nbits) & ((1u << m) - 1u)));
        rc->range = r;
        lgw_rc_norm(rc);
    }
}

static int lgw_rc_finish(lgw_rc_t *rc) {
    uint64_t low = rc->low, high = low + rc->range, v = 0;
    int k, i, emitted;
    for (k = 0; k < 5; k++) {
        int s = 32 - 8 * k;
        v = ((low + ((uint64_t)1 << s) - 1) >> s) << s;
        if (v < high) break;
    }
    if (v > 0xFFFFFFFFu) {
        lgw_rc_carry(rc);
        v &= 0xFFFFFFFFu;
    }
    emitted = rc->len;
    for (i = 0; i < k; i++) {
        if (rc->len < rc->cap) rc->out[rc->len++] = (uint8_t)(v >> (24 - 8 * i));
        else rc->full = 1;
    }
    /* Drop trailing zeros (the decoder reads zeros past the end), never below the bytes emitted
       while coding: a decoder that consumed more than the payload holds knows it was cut short. */
    while (rc->len > emitted && rc->out[rc->len - 1] == 0) rc->len--;
    return rc->full ? LGW_E_SPACE : rc->len;
}

/* One symbol of frequency table `tab` (lgw_freqs is byte-coded: f - 1 in one byte, or 0xFF then f LE). */
static void lgw_rc_symbol(lgw_rc_t *rc, int tab, unsigned sym) {
    const uint8_t *p = lgw_freqs + lgw_tab_at[tab];
    uint32_t cum = 0, f = 0;
    unsigned s;
    for (s = 0; s <= sym; s++) {
        if (*p == 0xFFu) {
            f = (uint32_t)p[1] | ((uint32_t)p[2] << 8);
            p += 3;
        } else {
            f = (uint32_t)*p + 1u;
            p += 1;
        }
        if (s < sym) cum += f;
    }
    lgw_rc_encode(rc, cum, f);
}

/* A residual through table `tab` with binning shift k: zigzag, symbol, raw bits. */
static void lgw_put_value(lgw_rc_t *rc, int tab, int k, int64_t v) {
    uint64_t z = v >= 0 ? (uint64_t)v << 1 : ((uint64_t)(-(v + 1)) << 1) + 1u;
    unsigned sym;
    uint64_t raw = 0;
    int nraw = 0;
    if (z < 4u) {
        sym = (unsigned)z;
    } else {
        uint64_t y = z - 4u, q = y >> k, low = y & (((uint64_t)1 << k) - 1u);
        if (q < 28u) {
            sym = 4u + (unsigned)q;
            raw = low;
            nraw = k;
        } else {
            uint64_t u = q - 28u + 1u;
            int e = 0;
            while ((u >> (e + 1)) != 0u) e++;
            sym = 32u + (unsigned)e;
            raw = ((u - ((uint64_t)1 << e)) << k) | low;
            nraw = e + k;
        }
    }
    lgw_rc_symbol(rc, tab, sym);
    lgw_rc_raw(rc, raw, nraw);
}

#if LGW_HAS_VFRAME
/* Revision 7, before the flags below: per channel with H = lgw_vframe[c] != 0 (lattice channels
   only) the frame flag, cum 0, freq 4096 - H when all of its readings in this frame are on the
   lattice, cum 4096 - H, freq H when some is off. Returns the "all on" channels as bits (at most 32
   channels), which then send nothing per sample. Kept apart from lgw_put_lattice_jitters so that
   the deepest path (that function's frame) grows by one argument only. */
static LGW_NOINLINE uint32_t lgw_put_frame_flags(lgw_rc_t *rc, const int32_t *samples, int n_samples) {
    uint32_t quiet = 0;
    int c;
    for (c = 0; c < LGW_CHANNELS; c++) {
        const int32_t *v = lgw_vmap + 5 * c;
        uint32_t h = lgw_vframe[c];
        int t;
        if (h == 0u) continue;
        for (t = 0; t < n_samples; t++) { /* up to the first reading off the lattice */
            int32_t x = samples[t * LGW_CHANNELS + c];
            if (x != lgw_lattice_value(v, lgw_lattice_index(v, x))) break;
        }
        if (t < n_samples) {
            lgw_rc_encode(rc, 4096u - h, h);
        } else {
            lgw_rc_encode(rc, 0u, 4096u - h);
            quiet |= (uint32_t)1 << c;
        }
    }
    return quiet;
}
#define LGW_QUIET_PARAM , uint32_t quiet
#else
#define LGW_QUIET_PARAM
#endif

#if LGW_HAS_VMAP
/* After the last sample (and revision 7's frame flags), per sample and lattice channel in order
   (but none of a channel whose frame flag said "all on", a bit of quiet): the off-lattice flag
   (cum 0, freq 4096 - F on the lattice; cum 4096 - F, freq F off it), then j - 1 in b raw bits, b
   the bit length of G - 2, G = L(k + 1) - L(k) >= 2 (2 D <= P, and Q = 0 in mode 2). */
static LGW_NOINLINE void lgw_put_lattice_jitters(lgw_rc_t *rc, const int32_t *samples,
                                                 int n_samples LGW_QUIET_PARAM) {
    int t, c;
    for (t = 0; t < n_samples; t++)
        for (c = 0; c < LGW_CHANNELS; c++) {
            const int32_t *v = lgw_vmap + 5 * c;
            int32_t x, k, low;
            uint32_t span, split;
            int nb = 0;
            if (v[3] == 0) continue;
#if LGW_HAS_VFRAME
            if ((quiet >> c) & 1u) continue;
#endif
            x = samples[t * LGW_CHANNELS + c];
            k = lgw_lattice_index(v, x);
            low = lgw_lattice_value(v, k);
            split = 4096u - (uint32_t)v[4];
            if (x == low) {
                lgw_rc_encode(rc, 0u, split);
                continue;
            }
            lgw_rc_encode(rc, split, (uint32_t)v[4]);
            span = (uint32_t)(lgw_lattice_value(v, k + 1) - low - 2); /* G - 2 >= 0 when j != 0 */
            while (nb < 32 && (span >> nb) != 0u) nb++;
            lgw_rc_raw(rc, (uint32_t)(x - low - 1), nb);
        }
}
#endif

/* ---- The first sample of a frame (t = 0): its prediction and its binning live here only. ---- */

#if LGW_HAS_WINDOW
/* Table 0 with shift 32 + s (docs/codec.md, "The first sample: windowed binning"): 62 bins of 2^s
   values centred on the prediction (symbols 1..62, s raw bits), escapes 0 (below) and 63 (above)
   followed by 5 raw bits e = floor(log2(a + 1)) and e raw bits a + 1 - 2^e. */
static void lgw_put_first_windowed(lgw_rc_t *rc, int tab, int s, int64_t v) {
    int64_t w = v + ((int64_t)31 << s), width = (int64_t)62 << s;
    if (w >= 0 && w < width) {
        lgw_rc_symbol(rc, tab, 1u + (unsigned)(w >> s));
        lgw_rc_raw(rc, (uint64_t)w & (((uint64_t)1 << s) - 1u), s);
    } else {
        uint64_t a1 = (w < 0 ? (uint64_t)(-(w + 1)) : (uint64_t)(w - width)) + 1u; /* a + 1 */
        int e = 0;
        while ((a1 >> (e + 1)) != 0u) e++;
        lgw_rc_symbol(rc, tab, w < 0 ? 0u : 63u);
        lgw_rc_raw(rc, (uint64_t)e, 5);
        lgw_rc_raw(rc, a1 - ((uint64_t)1 << e), e);
    }
}
#endif

/* The value table 0 codes for channel c: windowed or zigzag binning, as the model chose. */
static void lgw_put_first(lgw_rc_t *rc, int c, int64_t v) {
    int k = lgw_shift[c * LGW_T];
#if LGW_HAS_WINDOW
    if (k >= 32) {
        lgw_put_first_windowed(rc, c * LGW_T, k - 32, v);
        return;
    }
#endif
    lgw_put_value(rc, c * LGW_T, k, v);
}

/* The first sample's prediction: the channel's base plus the earlier channels' offsets (table 0). */
static int64_t lgw_first_pred(int c, const int32_t *x0) {
    int64_t acc = 0;
#if LGW_HAS_A0
    int j;
    for (j = 0; j < c; j++) acc += (int64_t)lgw_a0[c * LGW_CHANNELS + j] * ((int64_t)x0[j] - lgw_base[j]);
#else
    (void)x0;
#endif
    return (int64_t)lgw_base[c] + lgw_asr(acc + 2048, 12);
}

#if LGW_HAS_ACTW
/* Activity weights (revision 5): ar = min(|residual|, 65535) of the channels coded at this step. */
#define LGW_AR_PARAM , const uint16_t *ar
#define LGW_AR_ARG , ar
#else
#define LGW_AR_PARAM
#define LGW_AR_ARG
#endif

/* Later samples (t >= 1): xt = row t, xp = row t - 1, xpp = row t - 2 (NULL at t = 1); rows of lattice
   indices where the model has value lattices (LGW_HAS_VMAP), of readings otherwise. Sets *tab. */
static LGW_NOINLINE int64_t lgw_next_pred(int c, const int32_t *xt, const int32_t *xp, const int32_t *xpp,
                                          int *tab LGW_AR_PARAM) {
    int64_t acc = 0;
    int j;
    (void)xt;
    (void)j;
#if LGW_HAS_LEV
    acc += (int64_t)lgw_lev[c] * ((int64_t)xp[c] - lgw_base[c]);
#endif
#if LGW_HAS_A1
    if (xpp)
        for (j = 0; j < LGW_CHANNELS; j++)
            acc += (int64_t)lgw_a1[c * LGW_CHANNELS + j] * ((int64_t)xp[j] - xpp[j]);
#endif
#if LGW_HAS_A2
    for (j = 0; j < c; j++) acc += (int64_t)lgw_a2[c * LGW_CHANNELS + j] * ((int64_t)xt[j] - xp[j]);
#endif
    if (!xpp) {
        *tab = 1;
    } else {
        int64_t a = (int64_t)xp[c] - xpp[c];
        int b = 2;
        if (a < 0) a = -a;
#if LGW_HAS_ACTW
        /* act = actw[c][c] |d| + sum over j < c of actw[c][j] ar[j] (docs/codec.md, "Samples") */
        a *= lgw_actw[c * LGW_CHANNELS + c];
        for (j = 0; j < c; j++) a += (int64_t)lgw_actw[c * LGW_CHANNELS + j] * ar[j];
#endif
#if LGW_NTHR > 0
        for (j = 0; j < LGW_NTHR; j++)
            if (a > lgw_thr[c * LGW_NTHR + j]) b++;
#else
        (void)a;
#endif
        *tab = b;
    }
#if LGW_HAS_PMODE
    if (lgw_pmode[c] & 1) return (int64_t)xp[c] + lgw_snap(lgw_asr(acc + 2048, 12), lgw_grid[c]);
#endif
    return (int64_t)xp[c] + lgw_asr(acc + 2048, 12);
}

int lgw_encode_samples(const int32_t *samples, int n_samples, uint8_t *out, int out_cap) {
    lgw_rc_t rc;
    int t, c, i;
#if LGW_HAS_ACTW
    uint16_t ar[LGW_CHANNELS];
#endif
#if LGW_HAS_VMAP
    /* Lattice indices (what is predicted and coded) of rows t, t - 1, t - 2: three fixed rows in turn. */
    int32_t kr[3 * LGW_CHANNELS];
    int32_t *kt = kr, *kp = kr + LGW_CHANNELS, *kpp = kr + 2 * LGW_CHANNELS;
#endif
    if (!samples || !out || n_samples < 1 || n_samples > LGW_MAX_SAMPLES || out_cap < 0) return LGW_E_ARG;
    for (i = 0; i < n_samples * LGW_CHANNELS; i++)
        if (samples[i] <= -LGW_Q_LIMIT || samples[i] >= LGW_Q_LIMIT) return LGW_E_RANGE;
    rc.low = 0;
    rc.range = 0xFFFFFFFFu;
    rc.out = out;
    rc.len = 0;
    rc.cap = out_cap;
    rc.full = 0;
    /* Sample count: symbol 0 (frequency 4032) = samples_per_frame, symbol n (frequency 1) = n. */
    if (n_samples == LGW_SAMPLES_PER_FRAME) lgw_rc_encode(&rc, 0u, 4032u);
    else lgw_rc_encode(&rc, 4032u + (uint32_t)n_samples - 1u, 1u);
    for (t = 0; t < n_samples; t++) {
#if LGW_HAS_VMAP
        const int32_t *xt = kt;
        lgw_lattice_row(kt, samples + t * LGW_CHANNELS);
#else
        const int32_t *xt = samples + t * LGW_CHANNELS;
#endif
        for (c = 0; c < LGW_CHANNELS; c++) {
            int tab = 0;
            int64_t pred, r;
            if (t == 0) pred = lgw_first_pred(c, xt);
            else
#if LGW_HAS_VMAP
                pred = lgw_next_pred(c, xt, kp, t >= 2 ? kpp : (const int32_t *)0, &tab LGW_AR_ARG);
#else
                pred = lgw_next_pred(c, xt, xt - LGW_CHANNELS, t >= 2 ? xt - 2 * LGW_CHANNELS : (const int32_t *)0,
                                     &tab LGW_AR_ARG);
#endif
            if (pred < -LGW_Q_LIMIT) pred = -LGW_Q_LIMIT;
            if (pred > LGW_Q_LIMIT) pred = LGW_Q_LIMIT;
            r = (int64_t)xt[c] - pred;
#if LGW_HAS_ACTW
            ar[c] = (uint16_t)(r > 65535 || r < -65535 ? 65535 : (r < 0 ? -r : r));
#endif
#if LGW_HAS_GRID
            if (lgw_grid[c] != 256) {
                int64_t g = lgw_grid[c];
                int64_t m = lgw_floor_div(r * 256 + g / 2, g);
                int64_t e = r - lgw_asr(m * g + 128, 8);
                /* Jitter table by the lattice phase of m: ((m * g) mod 256) >> 6 (docs/codec.md), or
                   under PMODE_LATTICE_PHASE ((256 pred + m g) mod g) * 4 / g (floor modulo); chosen
                   before m is sent, so pred and g need not live across the calls below. */
                int ph = (int)(((uint64_t)(m * g) & 255u) >> 6);
#if LGW_HAS_PMODE
                if (lgw_pmode[c] & 2) ph = lgw_lattice_phase(pred, m, g);
#endif
                if (t == 0) lgw_put_first(&rc, c, m);
                else lgw_put_value(&rc, c * LGW_T + tab, lgw_shift[c * LGW_T + tab], m);
                lgw_put_value(&rc, LGW_CHANNELS * LGW_T + 4 * c + ph, 0, e);
                continue;
            }
#endif
            if (t == 0) lgw_put_first(&rc, c, r);
            else lgw_put_value(&rc, c * LGW_T + tab, lgw_shift[c * LGW_T + tab], r);
        }
#if LGW_HAS_VMAP
        { /* row t becomes row t - 1, ...; row t - 2's storage takes row t + 1 */
            int32_t *next = kpp;
            kpp = kp;
            kp = kt;
            kt = next;
        }
#endif
    }
#if LGW_HAS_VMAP
#if LGW_HAS_VFRAME
    {
        uint32_t quiet = lgw_put_frame_flags(&rc, samples, n_samples);
        lgw_put_lattice_jitters(&rc, samples, n_samples, quiet);
    }
#else
    lgw_put_lattice_jitters(&rc, samples, n_samples);
#endif
#endif
    return lgw_rc_finish(&rc);
}

int lgw_build_frame_ex(const lgw_node_t *node, uint32_t key_epoch, uint32_t fcnt, uint8_t flags,
                       const int32_t *samples, int n_samples, uint8_t *out, int out_cap) {
    int head, trailer, cap, len;
    if (!node || !out || out_cap < 0) return LGW_E_ARG;
    head = lgw_header_len(node->node_id);
    trailer = node->secured ? 4 : 2;
    cap = (out_cap < LGW_MAX_FRAME ? out_cap : LGW_MAX_FRAME) - head - trailer;
    if (cap < 0) return LGW_E_SPACE;
    len = lgw_encode_samples(samples, n_samples, out + head, cap);
    if (len < 0) return len;
    lgw_write_header(node, fcnt, LGW_CODEC_MODEL, flags, out);
    return lgw_seal(node, key_epoch, fcnt, out, head, head + len, out_cap, LGW_MODEL_FP);
}

int lgw_build_frame(const lgw_node_t *node, uint32_t fcnt, const int32_t *samples, int n_samples,
                    uint8_t *out, int out_cap) {
    return lgw_build_frame_ex(node, 0u, fcnt, 0u, samples, n_samples, out, out_cap);
}
