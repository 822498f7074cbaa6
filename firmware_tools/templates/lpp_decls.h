
/* Cayenne LPP payload writer: readings `channel | type | big-endian value`, concatenated. */
typedef struct {
    uint8_t *buf;
    int len;
    int cap;
} lgw_lpp_t;

#define LGW_LPP_DIGITAL_INPUT 0x00u  /* 1 byte, unsigned */
#define LGW_LPP_ANALOG_INPUT 0x02u   /* 2 bytes, signed, 0.01 */
#define LGW_LPP_ILLUMINANCE 0x65u    /* 2 bytes, unsigned, 1 lx */
#define LGW_LPP_TEMPERATURE 0x67u    /* 2 bytes, signed, 0.1 degC */
#define LGW_LPP_HUMIDITY 0x68u       /* 1 byte, unsigned, 0.5 % */
#define LGW_LPP_BAROMETER 0x73u      /* 2 bytes, unsigned, 0.1 hPa */
#define LGW_LPP_VOLTAGE 0x74u        /* 2 bytes, unsigned, 0.01 V */
#define LGW_LPP_PERCENTAGE 0x78u     /* 1 byte, unsigned, 1 % */

/* Start writing readings into buf (cap bytes). */
void lgw_lpp_init(lgw_lpp_t *lpp, uint8_t *buf, int cap);
/* One single-value reading; raw is the value in the type's resolution (e.g. 0.1 degC units).
   Returns 0, LGW_E_ARG (unknown or multi-field type), LGW_E_RANGE (raw does not fit the type) or
   LGW_E_SPACE (buffer full). */
int lgw_lpp_add(lgw_lpp_t *lpp, uint8_t channel, uint8_t type, int32_t raw);
