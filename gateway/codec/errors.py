"""Errors raised by the codec layer; each carries a snake_case ``reason`` for stats and logs."""

from __future__ import annotations

from gateway.errors import GatewayError


class CodecError(GatewayError):
    """Bad schema, data, payload or weight file; the message names the file, row or channel."""

    reason = "codec"


class SchemaError(CodecError):
    reason = "bad_schema"


class DataError(CodecError):
    reason = "bad_data"


class PayloadError(CodecError):
    reason = "bad_payload"


class WeightsError(CodecError):
    reason = "bad_weights"


class StoreError(CodecError):
    reason = "model_store"
