"""What every plane shares of observability: log lines (logs.py) and traces (tracing.py).

    configure_logging(level, fmt)     the process's root handler: text as before, or one JSON object a line
    bind(...) / annotate(...)         the ids of the request being handled, carried by every log line
    configure_tracing(service)        the OpenTelemetry SDK, only when an OTLP endpoint is set
    span(...), inject(), ...          no-ops (and no OpenTelemetry import) while tracing is off

Only this package imports OpenTelemetry (an import-linter contract); the planes call its helpers.
"""
