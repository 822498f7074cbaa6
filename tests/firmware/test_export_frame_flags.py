"""A model with frame flags (bitstream revision 7) is refused by the C export in one line, not
exported as an encoder that would write revision 6 frames failing their check at the gateway."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from firmware_tools.export_c.generate import ExportError, export_model
from gateway.codec import Channel, Model, Schema, train


def test_export_refuses_a_frame_flag_model_and_takes_it_without(tmp_path):
    rng = np.random.default_rng(6)
    walk = 500 + np.cumsum(rng.normal(0, 5, 1400))
    x = np.rint(walk).astype(np.int64)
    x[300:] = 2 * np.floor(walk[300:] / 2).astype(np.int64)
    model = train(x[:600, None], Schema((Channel("current", "nA", 0.01),)), 16, buckets=2)
    assert model.params.vframe.any()
    with pytest.raises(ExportError, match=r"frame flags \(bitstream revision 7\)"):
        export_model(model, tmp_path / "flags")
    assert not (tmp_path / "flags").exists() or not any((tmp_path / "flags").iterdir())
    without = Model(model.schema, replace(model.params, vframe=np.zeros(1, dtype=np.int64)), 16)
    assert export_model(without, tmp_path / "plain")
