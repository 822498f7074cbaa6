
/* The model this file was exported for. */
#define LGW_MODEL_ID @MODEL_ID@
#define LGW_MODEL_VERSION @MODEL_VERSION@u
#define LGW_CODEC_MODEL @CODEC_BYTE@u /* the codec byte: 1mmmmvvv */
#define LGW_CHANNELS @CHANNELS@            /* the model's channel count */
#define LGW_SAMPLES_PER_FRAME @SPF@   /* the model's samples per frame */
#define LGW_MAX_SAMPLES 64
@CHANNEL_DOC@
/* The model's fingerprint (docs/codec.md): covered by the CRC/MIC of every frame lgw_build_frame
   makes, never sent, so that a frame checked under other weights fails instead of decoding wrongly. */
extern const uint8_t LGW_MODEL_FP[8];

/* samples: n_samples rows of LGW_CHANNELS integers, each in units of its channel's step (as the CSV
   value / step, rounded), row-major. Returns the frame length, or a negative LGW_E_* error. */
int lgw_build_frame(const lgw_node_t *node, uint32_t fcnt, const int32_t *samples, int n_samples,
                    uint8_t *out, int out_cap);

/* The same with a key epoch and header flags (LGW_ACK_REQUESTED). */
int lgw_build_frame_ex(const lgw_node_t *node, uint32_t key_epoch, uint32_t fcnt, uint8_t flags,
                       const int32_t *samples, int n_samples, uint8_t *out, int out_cap);

/* The codec payload alone (no frame): returns its length or a negative LGW_E_* error. */
int lgw_encode_samples(const int32_t *samples, int n_samples, uint8_t *out, int out_cap);
