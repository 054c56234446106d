# syntax=docker/dockerfile:1
# The ROCm probe (AMD Instinct MI300X...): torch's ROCm build brings the HIP runtime, rocBLAS and
# RCCL as wheels; /dev/kfd and /dev/dri come from the node through AMD's device plugin. torch
# addresses ROCm GPUs as `cuda` devices, so the probe runs with --device auto as on NVIDIA.
# As a non-root user the probe needs the node's `video`/`render` groups on those device files
# (pod securityContext.supplementalGroups; see docs/install.md).
#   docker build -f images/probe-rocm.Dockerfile -t ghcr.io/accelqual/probe-rocm:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY probes ./probes
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# torch as pinned in pyproject.toml, built for ROCm 6.4.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/rocm6.4
LABEL org.opencontainers.image.title="accelqual probe (ROCm)" \
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
USER 65532:65532
ENTRYPOINT ["accelqual", "probe"]
