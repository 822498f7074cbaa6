"""``lora-fw export-c``: portable C99 for nodes (frame builder, a model's encoder, AES, provisioning).

The generated code is a table-driven translation of the Python encoders (gateway/frames/encoder.py,
gateway/codec/model.py): the templates in ``firmware_tools/templates`` hold the logic, this package
fills in one model's tables. tests/firmware proves the result byte-identical to the Python side.
"""

from firmware_tools.export_c.generate import ExportError, export_lpp, export_model, export_provisioning

__all__ = ["ExportError", "export_lpp", "export_model", "export_provisioning"]
