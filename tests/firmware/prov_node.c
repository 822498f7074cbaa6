/* A node built from the exported lgw_prov.c: serial line = stdin/stdout, committed configuration
 * printed to stderr (one "name value" line per field), for tests/firmware/test_prov_c.py. */
#include <stdio.h>
#include <unistd.h>

#include "lgw_prov.h"

static void write_out(void *ctx, const uint8_t *data, int len) {
    (void)ctx;
    if (write(1, data, (size_t)len) != len) _exit(3);
}

static int commit(void *ctx, const lgw_prov_config_t *c) {
    int i;
    (void)ctx;
    fprintf(stderr, "node_id %u\nkey ", (unsigned)c->node_id);
    for (i = 0; i < 16; i++) fprintf(stderr, "%02x", c->root_key[i]);
    fprintf(stderr, "\nkey_epoch %u\nfrequency_hz %u\nsf %u\nbw_hz %u\ncr %u\nsync_word %u\n",
            (unsigned)c->key_epoch, (unsigned)c->frequency_hz, c->spreading_factor,
            (unsigned)c->bandwidth_hz, c->coding_rate, c->sync_word);
    fprintf(stderr, "tx_power_dbm %d\nmodel_id %u\nmodel_version %u\ninterval_s %u\nset_mask %x\n",
            c->tx_power_dbm, c->model_id, c->model_version, (unsigned)c->interval_s, (unsigned)c->set_mask);
    fflush(stderr);
    return 0;
}

int main(void) {
    lgw_prov_t prov;
    uint8_t buf[256];
    ssize_t n, i;
    lgw_prov_init(&prov, NULL, write_out, commit, NULL, "c-node 1");
    while ((n = read(0, buf, sizeof buf)) > 0)
        for (i = 0; i < n; i++) lgw_prov_feed(&prov, buf[i]);
    return 0;
}
