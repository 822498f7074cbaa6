/* ---- Frame builder (docs/frame-format.md, version 0) ------------------------------------------
 * Open profile: CRC-16/CCITT-FALSE trailer, little-endian. Secured profile: session keys derived
 * from the root key and key epoch, AES-128-CTR payload, 4-byte AES-CMAC MIC over B0 | msg.
 * Learned-model frames bind the model's fingerprint: CRC over fp | msg, MIC over B0 | fp | msg. */

static void lgw_copy(uint8_t *dst, const uint8_t *src, int n) {
    int i;
    if (dst == src || n <= 0) return;
    if (dst < src) {
        for (i = 0; i < n; i++) dst[i] = src[i];
    } else {
        for (i = n - 1; i >= 0; i--) dst[i] = src[i];
    }
}

static uint16_t lgw_crc16(uint16_t crc, const uint8_t *data, int n) {
    int i, b;
    for (i = 0; i < n; i++) {
        crc = (uint16_t)(crc ^ ((uint16_t)data[i] << 8));
        for (b = 0; b < 8; b++) {
            uint32_t shifted = (uint32_t)crc << 1;
            crc = (uint16_t)((crc & 0x8000u) ? (shifted ^ 0x1021u) : shifted);
        }
    }
    return crc;
}

/* AES-CMAC (RFC 4493), streaming: x = chaining value, buf = last (possibly full) block. */
typedef struct {
    uint8_t key[16];
    uint8_t x[16];
    uint8_t buf[16];
    uint8_t n;
} lgw_cmac_t;

static void lgw_cmac_init(lgw_cmac_t *c, const uint8_t key[16]) {
    int i;
    for (i = 0; i < 16; i++) {
        c->key[i] = key[i];
        c->x[i] = 0;
    }
    c->n = 0;
}

static void lgw_cmac_update(lgw_cmac_t *c, const uint8_t *data, int len) {
    int i;
    while (len > 0) {
        if (c->n == 16) { /* a full block that is not the last: chain it */
            for (i = 0; i < 16; i++) c->x[i] ^= c->buf[i];
            lgw_aes128_encrypt(c->key, c->x, c->x);
            c->n = 0;
        }
        c->buf[c->n++] = *data++;
        len--;
    }
}

static void lgw_dbl(uint8_t b[16]) {
    int i;
    uint8_t carry = (uint8_t)(b[0] & 0x80u);
    for (i = 0; i < 15; i++) b[i] = (uint8_t)((b[i] << 1) | (b[i + 1] >> 7));
    b[15] = (uint8_t)((b[15] << 1) ^ (carry ? 0x87u : 0x00u));
}

static void lgw_cmac_final(lgw_cmac_t *c, uint8_t tag[16]) {
    uint8_t k[16] = {0};
    int i;
    lgw_aes128_encrypt(c->key, k, k); /* L */
    lgw_dbl(k);                       /* K1 */
    if (c->n < 16) {
        lgw_dbl(k); /* K2, with 10* padding */
        c->buf[c->n] = 0x80u;
        for (i = c->n + 1; i < 16; i++) c->buf[i] = 0;
    }
    for (i = 0; i < 16; i++) c->x[i] ^= (uint8_t)(c->buf[i] ^ k[i]);
    lgw_aes128_encrypt(c->key, c->x, tag);
}

static void lgw_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* K_role(E) = AES-128(K, role | E (4 bytes LE) | 00 x 11). */
static void lgw_session_key(const uint8_t root[16], uint8_t role, uint32_t epoch, uint8_t out[16]) {
    uint8_t blk[16] = {0};
    blk[0] = role;
    lgw_put32(blk + 1, epoch);
    lgw_aes128_encrypt(root, blk, out);
}

/* B0 (tag 0x49) and A_i (tag 0x01): tag | 00 x 4 | Dir=0 | NodeId (4 LE) | FCnt (4 LE) | 00 | last. */
static void lgw_block(uint8_t blk[16], uint8_t tag, uint32_t node_id, uint32_t fcnt, uint8_t last) {
    int i;
    blk[0] = tag;
    for (i = 1; i < 6; i++) blk[i] = 0;
    lgw_put32(blk + 6, node_id);
    lgw_put32(blk + 10, fcnt);
    blk[14] = 0;
    blk[15] = last;
}

int lgw_header_len(uint32_t node_id) {
    return 4 + (node_id < 0x100u ? 1 : node_id < 0x10000u ? 2 : node_id < 0x1000000u ? 3 : 4);
}

/* Writes the header into out[0 .. head) and returns head. */
static int lgw_write_header(const lgw_node_t *node, uint32_t fcnt, uint8_t codec, uint8_t flags,
                            uint8_t *out) {
    int head = lgw_header_len(node->node_id);
    int idlen = head - 4;
    int i;
    out[0] = (uint8_t)((node->secured ? 0x08u : 0x00u) | (flags & 0x34u) | (uint8_t)(idlen - 1));
    for (i = 0; i < idlen; i++) out[1 + i] = (uint8_t)(node->node_id >> (8 * i));
    out[1 + idlen] = (uint8_t)fcnt;
    out[2 + idlen] = (uint8_t)(fcnt >> 8);
    out[3 + idlen] = codec;
    return head;
}

/* Encrypts out[head .. msg_len) in place (secured) and appends the trailer; fp: 8 bytes or NULL. */
static int lgw_seal(const lgw_node_t *node, uint32_t key_epoch, uint32_t fcnt, uint8_t *out, int head,
                    int msg_len, int out_cap, const uint8_t *fp) {
    int i;
    if (!node->secured) {
        uint16_t crc = 0xFFFFu;
        if (msg_len + 2 > out_cap || msg_len + 2 > LGW_MAX_FRAME) return LGW_E_SPACE;
        if (fp) crc = lgw_crc16(crc, fp, 8);
        crc = lgw_crc16(crc, out, msg_len);
        out[msg_len] = (uint8_t)crc;
        out[msg_len + 1] = (uint8_t)(crc >> 8);
        return msg_len + 2;
    } else {
        uint8_t key[16];
        uint8_t blk[16];
        lgw_cmac_t mac;
        uint8_t block_index = 1;
        if (msg_len + 4 > out_cap || msg_len + 4 > LGW_MAX_FRAME) return LGW_E_SPACE;
        lgw_session_key(node->key, 0x02u, key_epoch, key); /* K_enc */
        for (i = head; i < msg_len; i++) {
            if ((i - head) % 16 == 0) {
                lgw_block(blk, 0x01u, node->node_id, fcnt, block_index++);
                lgw_aes128_encrypt(key, blk, blk);
            }
            out[i] ^= blk[(i - head) % 16];
        }
        lgw_session_key(node->key, 0x01u, key_epoch, key); /* K_mic */
        lgw_cmac_init(&mac, key);
        lgw_block(blk, 0x49u, node->node_id, fcnt, (uint8_t)msg_len);
        lgw_cmac_update(&mac, blk, 16);
        if (fp) lgw_cmac_update(&mac, fp, 8);
        lgw_cmac_update(&mac, out, msg_len);
        lgw_cmac_final(&mac, blk);
        for (i = 0; i < 4; i++) out[msg_len + i] = blk[i];
        for (i = 0; i < 16; i++) key[i] = 0;
        return msg_len + 4;
    }
}

int lgw_build_frame_payload(const lgw_node_t *node, uint32_t key_epoch, uint32_t fcnt, uint8_t codec,
                            uint8_t flags, const uint8_t *payload, int len, uint8_t *out, int out_cap) {
    int head;
    /* Raw (0x00), LPP (0x01) and node info (0x02, made by lgw_build_info) only: a learned-model frame's
       check binds its model's fingerprint, so those come from the model export's lgw_build_frame. */
    if (!node || !out || len < 0 || (len > 0 && !payload) || codec > 0x02u || (flags & 0x30u) == 0x30u)
        return LGW_E_ARG;
    head = lgw_header_len(node->node_id);
    if (head + len + (node->secured ? 4 : 2) > out_cap || head + len + (node->secured ? 4 : 2) > LGW_MAX_FRAME)
        return LGW_E_SPACE;
    lgw_copy(out + head, payload, len); /* first: payload may overlap the header's bytes */
    lgw_write_header(node, fcnt, codec, flags, out);
    return lgw_seal(node, key_epoch, fcnt, out, head, head + len, out_cap, (const uint8_t *)0);
}

/* Node info (codec byte 0x02): layout 0 | fw major, minor, patch | active id | active version (2 LE) |
   count | count x (id | version (2 LE) | fingerprint[0..4)). */
int lgw_build_info(const lgw_node_t *node, uint32_t key_epoch, uint32_t fcnt, uint8_t flags,
                   const uint8_t fw[3], uint8_t active_id, uint32_t active_version,
                   const lgw_held_model_t *models, int n_models, uint8_t *out, int out_cap) {
    int head, at, i, k, len;
    if (!node || !out || !fw || n_models < 0 || n_models > LGW_INFO_MAX_MODELS || (n_models > 0 && !models))
        return LGW_E_ARG;
    if (active_id == LGW_NO_MODEL) active_version = 0;
    else if (active_id > 15u || active_version > 0xFFFFu) return LGW_E_ARG;
    for (i = 0; i < n_models; i++)
        if (models[i].model_id > 15u || models[i].version > 0xFFFFu || !models[i].fingerprint) return LGW_E_ARG;
    head = lgw_header_len(node->node_id);
    len = 8 + 7 * n_models;
    if (head + len + (node->secured ? 4 : 2) > out_cap || head + len + (node->secured ? 4 : 2) > LGW_MAX_FRAME)
        return LGW_E_SPACE;
    at = head;
    out[at++] = 0; /* layout */
    for (i = 0; i < 3; i++) out[at++] = fw[i];
    out[at++] = active_id;
    out[at++] = (uint8_t)active_version;
    out[at++] = (uint8_t)(active_version >> 8);
    out[at++] = (uint8_t)n_models;
    for (i = 0; i < n_models; i++) {
        out[at++] = models[i].model_id;
        out[at++] = (uint8_t)models[i].version;
        out[at++] = (uint8_t)(models[i].version >> 8);
        for (k = 0; k < 4; k++) out[at++] = models[i].fingerprint[k];
    }
    return lgw_build_frame_payload(node, key_epoch, fcnt, LGW_CODEC_INFO, flags, out + head, len, out, out_cap);
}
