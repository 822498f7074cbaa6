
/* ---- Cayenne LPP writer --------------------------------------------------------------------- */

void lgw_lpp_init(lgw_lpp_t *lpp, uint8_t *buf, int cap) {
    lpp->buf = buf;
    lpp->len = 0;
    lpp->cap = cap;
}

/* Single-value types: size in bytes, and whether signed. 0: unknown or multi-field. */
static int lgw_lpp_size(uint8_t type, int *is_signed) {
    *is_signed = 0;
    switch (type) {
    case 0x00: case 0x01: case 0x66: case 0x68: case 0x78: case 0x8E: return 1;
    case 0x02: case 0x03: case 0x67: case 0x79: *is_signed = 1; return 2;
    case 0x65: case 0x73: case 0x74: case 0x75: case 0x80: case 0x84: return 2;
    case 0x64: case 0x76: case 0x82: case 0x83: case 0x85: return 4;
    default: return 0;
    }
}

int lgw_lpp_add(lgw_lpp_t *lpp, uint8_t channel, uint8_t type, int32_t raw) {
    int is_signed, size, i;
    if (!lpp || !lpp->buf) return LGW_E_ARG;
    size = lgw_lpp_size(type, &is_signed);
    if (size == 0) return LGW_E_ARG;
    if (size < 4) {
        int32_t lim = (int32_t)1 << (8 * size - (is_signed ? 1 : 0));
        if (is_signed ? (raw < -lim || raw >= lim) : (raw < 0 || raw >= lim)) return LGW_E_RANGE;
    } else if (!is_signed && raw < 0) {
        return LGW_E_RANGE; /* 4-byte unsigned types take 0 .. 2^31-1 here */
    }
    if (lpp->len + 2 + size > lpp->cap) return LGW_E_SPACE;
    lpp->buf[lpp->len++] = channel;
    lpp->buf[lpp->len++] = type;
    for (i = size - 1; i >= 0; i--) lpp->buf[lpp->len++] = (uint8_t)((uint32_t)raw >> (8 * i));
    return 0;
}
