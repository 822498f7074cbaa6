"""The C export of frame flags (bitstream revision 7): the table and its code only in exports of
models that have them, so that older models' exports keep their object code; the frames themselves
are checked against Python in test_export_c.py."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from firmware_tools.export_c.generate import SOURCE, ExportError, export_model, render_model
from gateway.codec import Channel, Model, Schema
from gateway.codec.schema import MAX_CHANNELS

from .conftest import _widened


def _vframe_table(source: str) -> list[int] | None:
    found = re.search(r"static const uint16_t lgw_vframe\[\d+\] = \{([^}]*)\};", source)
    return None if found is None else [int(v) for v in found.group(1).replace(",", " ").split()]


def test_frame_flag_table_only_in_exports_of_models_with_frame_flags(datasets, exports):
    for name, (model, _q) in datasets.items():
        source = (exports[name] / SOURCE).read_text()
        flags = bool(model.params.vframe.any())
        assert f"#define LGW_HAS_VFRAME {int(flags)}" in source, name
        assert _vframe_table(source) == (model.params.vframe.tolist() if flags else None), name
    assert datasets["vframe"][0].params.vframe.any()  # the trained model is one of them


def test_a_model_without_frame_flags_exports_as_revision_6(datasets):
    model = datasets["vframe"][0]
    without = Model(model.schema, replace(model.params, vframe=np.zeros(2, dtype=np.int64)), 16, 13, 7)
    source = render_model(without)[SOURCE]
    assert "#define LGW_HAS_VFRAME 0" in source and "#define LGW_HAS_VMAP 1" in source
    assert _vframe_table(source) is None


def test_frame_flags_on_more_than_32_channels_are_refused_in_one_line(datasets, tmp_path):
    """The encoder keeps the frame flags' outcomes in one uint32_t (a schema has at most 32 channels)."""
    model = datasets["vframe"][0]
    n = MAX_CHANNELS + 1
    wide = Model(
        Schema(tuple(Channel(f"c{i}", "", 1.0) for i in range(n))), _widened(model.params, [0] * n), 16
    )
    with pytest.raises(
        ExportError, match=f"frame flags on a model with {n} channels, at most {MAX_CHANNELS}"
    ):
        export_model(wide, tmp_path / "wide")
