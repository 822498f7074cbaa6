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
    # Revision 3 when some channel's four jitter tables differ; else revision 2's bytes exactly.
    jf = p.jfreq.tolist()
    phased = any(jf[c][i] != jf[c][0] for c in range(p.channels) for i in (1, 2, 3))
    msg = b"lora-gw codec bitstream 3\x00" if phased else b"lora-gw codec bitstream 2\x00"
    modes = any(p.pmode.tolist())  # revision 4: prediction modes, jfreq whole, pmode after it
    if modes:
        phased, msg = True, b"lora-gw codec bitstream 4\x00"
    msg += struct.pack("<B", model.model_id) + struct.pack("<I", model.version)
    msg += bytes((model.samples_per_frame, p.channels, p.thr.shape[1] + 1))
    for name in ("base", "a0", "a1", "a2", "lev", "thr", "shift", "freq", "grid", "jfreq"):
        arr = p.jfreq[:, 0] if name == "jfreq" and not phased else getattr(p, name)
        for v in np.asarray(arr).ravel().tolist():
            msg += struct.pack("<i", v)
    if modes:
        msg += b"".join(struct.pack("<i", v) for v in p.pmode.tolist())
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


def test_phased_jitter_tables_hash_as_revision_3():
    """A model whose jitter tables differ by lattice phase codes revision 3's bitstream: its
    fingerprint follows the document, and each phase table is covered."""
    from gateway.codec import Channel, Schema, train
    from gateway.codec.model import fingerprint_message

    from .conftest import grid_series

    schema = Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3)))
    trained = train(grid_series(), schema, 16, buckets=2)
    # This lattice is one of the readings too, so the trainer adds prediction modes (revision 4,
    # hashed as the document says); without them the same tables code revision 3's bitstream.
    assert trained.params.pmode.any() and _from_doc(trained) == trained.fingerprint
    assert fingerprint_message(trained).startswith(b"lora-gw codec bitstream 4\x00")
    gm = Model(schema, dataclasses.replace(trained.params, pmode=np.zeros(3, dtype=np.int64)), 16)
    assert np.any(gm.params.jfreq != gm.params.jfreq[:, :1])
    assert fingerprint_message(gm).startswith(b"lora-gw codec bitstream 3\x00")
    assert _from_doc(gm) == gm.fingerprint
    c = int(np.flatnonzero(gm.params.grid != 256)[0])
    jfreq = gm.params.jfreq.copy()
    j = int(np.argmax(jfreq[c, 3]))
    jfreq[c, 3, j] -= 1
    jfreq[c, 3, (j + 1) % 64] += 1
    other = Model(schema, dataclasses.replace(gm.params, jfreq=jfreq), 16, gm.model_id, gm.version)
    assert other.fingerprint != gm.fingerprint == from_bytes(to_bytes(gm), "copy").fingerprint
