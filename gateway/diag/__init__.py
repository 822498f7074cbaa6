"""Field diagnostics: checks of the chip, the air, the broker, the outbox and the models.

Sits above the service layer (it reuses the service's config resolution and the real driver, sink,
outbox and model store) and below the CLI, which only formats what these modules return.
"""
