# syntax=docker/dockerfile:1
# The CPU reference probe (`accelqual probe`, profile cpu-reference): the standard's checks on the
# host CPU with torch's CPU build. For CI, labs and the simulated fleet; no accelerator needed.
#   docker build -f images/probe-cpu.Dockerfile -t ghcr.io/accelqual/probe-cpu:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY probes ./probes
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# torch as pinned in pyproject.toml (the [probe] extra), CPU build.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
LABEL org.opencontainers.image.title="accelqual probe (CPU reference)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/accelqual/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    USER=accelqual
COPY images/requirements-probe.txt /tmp/requirements-probe.txt
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/accelqual \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check \
        --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements-probe.txt \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /wheels/accelqual-*.whl \
    && rm -rf /wheels /tmp/requirements-probe.txt \
    && groupadd --gid 65532 accelqual \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin accelqual
# The UID probe pods run as (planning/podspec.py PROBE_UID); a passwd entry, because torch's
# compile cache asks for the user name.
USER 65532:65532
# Probe pods pass arguments only (planning/podspec.py PROBE_ENTRYPOINT): the image decides the program.
ENTRYPOINT ["accelqual", "probe"]
