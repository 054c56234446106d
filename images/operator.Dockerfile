# syntax=docker/dockerfile:1
# The accelqual operator (`accelqual operator`): kopf, the Kubernetes client, boto3, no torch.
# Build from the repository root (the chart's default image):
#   docker build -f images/operator.Dockerfile -t ghcr.io/accelqual/operator:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The wheel of this repository (pure Python; its [probe] extra, torch, is not installed).
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY probes ./probes
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="accelqual operator" \
      org.opencontainers.image.description="Kubernetes operator that qualifies AI accelerator cards" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/accelqual/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
COPY --from=wheel /wheels /wheels
# The operator's dependencies are the exact pins of pyproject.toml.
RUN python -m venv /opt/accelqual \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check /wheels/accelqual-*.whl \
    && rm -rf /wheels \
    && groupadd --gid 65532 accelqual \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin accelqual
# Non-root; the chart also sets runAsNonRoot, a read-only root filesystem and drops all capabilities.
USER 65532:65532
# 8000: Prometheus /metrics (--metrics-port); 8080: kopf's health endpoint (--liveness).
EXPOSE 8000 8080
ENTRYPOINT ["accelqual", "operator"]
