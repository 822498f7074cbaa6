"""Model.fingerprint (docs/codec.md, "Fingerprint"): a known answer recomputed from the document,
and sensitivity to everything that decides the bitstream, never to the weight file's bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import numpy as np

from gateway.codec import Model
from gateway.codec.weights import from_bytes, to_bytes

DEMO_FINGERPRINT = "9541f1e03fd6d1fe"


def _from_doc(model: Model) -> bytes:
    """The canonical encoding, written out from docs/codec.md without the codec's own helper."""
    p = model.params
    msg = b"lora-gw codec bitstream 2\x00"
    msg += struct.pack("<B", model.model_id) + struct.pack("<I", model.version)
    msg += bytes((model.samples_per_frame, p.channels, p.thr.shape[1] + 1))
    for name in ("base", "a0", "a1", "a2", "lev", "thr", "shift", "freq", "grid", "jfreq"):
        for v in np.asarray(getattr(p, name)).ravel().tolist():
            msg += struct.pack("<i", v)
    msg += ",".join(repr(float(c.step)) for c in model.schema.channels).encode("ascii")
    return hashlib.sha256(msg).digest()[:8]


def test_demo_fingerprint_known_answer(demo):
    assert demo.fingerprint.hex() == DEMO_FINGERPRINT
    assert _from_doc(demo) == demo.fingerprint


def test_fingerprint_ignores_the_file_but_follows_the_bitstream(model):
    again = from_bytes(to_bytes(model), "copy")  # another file (timestamps), the same bitstream
    assert again.fingerprint == model.fingerprint == _from_doc(model)
    p = model.params
    freq = p.freq.copy()
    j = int(np.argmax(freq[0, 0]))
    freq[0, 0, j] -= 1  # one count moved between two symbols of one table
    freq[0, 0, (j + 1) % 64] += 1
    finer = dataclasses.replace(model.schema.channels[0], step=0.05)
    variants = [
        Model(model.schema, model.params, model.samples_per_frame, model.model_id, model.version + 8),
        Model(model.schema, model.params, model.samples_per_frame + 1, model.model_id, model.version),
        Model(model.schema, dataclasses.replace(p, freq=freq), model.samples_per_frame, 0, model.version),
        Model(
            dataclasses.replace(model.schema, channels=(finer, *model.schema.channels[1:])),
            model.params,
            model.samples_per_frame,
            model.model_id,
            model.version,
        ),
    ]
    prints = {v.fingerprint for v in variants}
    assert len(prints) == len(variants) and model.fingerprint not in prints
    assert all(len(v.fingerprint) == 8 for v in variants)
