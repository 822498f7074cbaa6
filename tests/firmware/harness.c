/* Host harness for tests/firmware: reads one request per line on stdin, prints one answer per line.
 *   A KEY IN                               -> AES-128(KEY, IN)
 *   P ID SECURED KEY EPOCH FCNT FLAGS CODEC PAYLOAD|-   -> lgw_build_frame_payload
 *   L ID SECURED KEY FCNT (CH TYPE RAW)... -> LPP readings, then a frame with codec 0x01 (--lpp export)
 *   M ID SECURED KEY EPOCH FCNT FLAGS N V... -> lgw_build_frame_ex (model export)
 *   I ID SECURED KEY EPOCH FCNT FLAGS CAP FW ACTIVE_ID ACTIVE_VERSION N (MODEL_ID VERSION FP|-)...
 *                                          -> lgw_build_info (FW: 3 bytes hex, FP: 8 bytes hex)
 *   J ID SECURED KEY FCNT                  -> lgw_build_info holding the exported model (model export)
 * Answers: the frame as hex, or "E <code>". Hex fields are lower-case without separators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgw_node.h"

static int unhex(const char *s, uint8_t *out, int cap) {
    int n = 0;
    if (strcmp(s, "-") == 0) return 0;
    while (s[0] && s[1] && n < cap) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) return -1;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void answer(int len, const uint8_t *buf) {
    int i;
    if (len < 0) {
        printf("E %d\n", len);
        return;
    }
    for (i = 0; i < len; i++) printf("%02x", buf[i]);
    printf("\n");
}

static char *next(char **save) { return strtok_r(NULL, " \n", save); }

int main(void) {
    static char line[1 << 16];
    uint8_t out[300];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL;
        char *cmd = strtok_r(line, " \n", &save);
        lgw_node_t node;
        if (!cmd) continue;
        if (cmd[0] == 'A') {
            uint8_t key[16], in[16];
            unhex(next(&save), key, 16);
            unhex(next(&save), in, 16);
            lgw_aes128_encrypt(key, in, out);
            answer(16, out);
            continue;
        }
        memset(&node, 0, sizeof node);
        node.node_id = (uint32_t)strtoul(next(&save), NULL, 0);
        node.secured = (uint8_t)atoi(next(&save));
        unhex(next(&save), node.key, 16);
        if (cmd[0] == 'P') {
            uint8_t payload[300];
            uint32_t epoch = (uint32_t)strtoul(next(&save), NULL, 0);
            uint32_t fcnt = (uint32_t)strtoul(next(&save), NULL, 0);
            uint8_t flags = (uint8_t)strtoul(next(&save), NULL, 0);
            uint8_t codec = (uint8_t)strtoul(next(&save), NULL, 0);
            int cap = atoi(next(&save));
            int n = unhex(next(&save), payload, (int)sizeof payload);
            answer(lgw_build_frame_payload(&node, epoch, fcnt, codec, flags, payload, n, out, cap), out);
        }
        else if (cmd[0] == 'I') {
            static uint8_t fps[LGW_INFO_MAX_MODELS + 2][8];
            lgw_held_model_t held[LGW_INFO_MAX_MODELS + 2];
            uint8_t fw[3];
            uint32_t epoch = (uint32_t)strtoul(next(&save), NULL, 0);
            uint32_t fcnt = (uint32_t)strtoul(next(&save), NULL, 0);
            uint8_t flags = (uint8_t)strtoul(next(&save), NULL, 0);
            int cap = atoi(next(&save));
            uint8_t active_id;
            uint32_t active_version;
            int n, i;
            unhex(next(&save), fw, 3);
            active_id = (uint8_t)strtoul(next(&save), NULL, 0);
            active_version = (uint32_t)strtoul(next(&save), NULL, 0);
            n = atoi(next(&save));
            for (i = 0; i < n && i < LGW_INFO_MAX_MODELS + 2; i++) {
                char *fp;
                held[i].model_id = (uint8_t)strtoul(next(&save), NULL, 0);
                held[i].version = (uint32_t)strtoul(next(&save), NULL, 0);
                fp = next(&save);
                held[i].fingerprint = strcmp(fp, "-") == 0 ? NULL : fps[i];
                unhex(fp, fps[i], 8);
            }
            answer(lgw_build_info(&node, epoch, fcnt, flags, fw, active_id, active_version, held, n, out, cap),
                   out);
        }
#ifdef LGW_CHANNELS
        else if (cmd[0] == 'J') {
            static const uint8_t fw[3] = {1, 0, 0};
            const lgw_held_model_t held[1] = {{LGW_MODEL_ID, LGW_MODEL_VERSION, LGW_MODEL_FP}};
            uint32_t fcnt = (uint32_t)strtoul(next(&save), NULL, 0);
            answer(lgw_build_info(&node, 0, fcnt, 0, fw, LGW_MODEL_ID, LGW_MODEL_VERSION, held, 1, out, 255), out);
        }
        else if (cmd[0] == 'M') {
            static int32_t samples[LGW_MAX_SAMPLES * LGW_CHANNELS + 1];
            uint32_t epoch = (uint32_t)strtoul(next(&save), NULL, 0);
            uint32_t fcnt = (uint32_t)strtoul(next(&save), NULL, 0);
            uint8_t flags = (uint8_t)strtoul(next(&save), NULL, 0);
            int cap = atoi(next(&save));
            int n = atoi(next(&save));
            int i;
            for (i = 0; i < n * LGW_CHANNELS && i < LGW_MAX_SAMPLES * LGW_CHANNELS; i++)
                samples[i] = (int32_t)strtol(next(&save), NULL, 10);
            if (epoch == 0 && flags == 0)
                answer(lgw_build_frame(&node, fcnt, samples, n, out, cap), out);
            else
                answer(lgw_build_frame_ex(&node, epoch, fcnt, flags, samples, n, out, cap), out);
        }
#else
        else if (cmd[0] == 'L') {
            uint8_t payload[255];
            lgw_lpp_t lpp;
            uint32_t fcnt = (uint32_t)strtoul(next(&save), NULL, 0);
            char *tok;
            int err = 0;
            lgw_lpp_init(&lpp, payload, (int)sizeof payload);
            while (!err && (tok = next(&save)) != NULL) {
                uint8_t ch = (uint8_t)atoi(tok);
                uint8_t type = (uint8_t)strtoul(next(&save), NULL, 0);
                int32_t raw = (int32_t)strtol(next(&save), NULL, 10);
                err = lgw_lpp_add(&lpp, ch, type, raw);
            }
            if (err) answer(err, out);
            else answer(lgw_build_frame_payload(&node, 0, fcnt, LGW_CODEC_LPP, 0, lpp.buf, lpp.len, out, 255), out);
        }
#endif
        else {
            printf("E unknown\n");
        }
    }
    return 0;
}
