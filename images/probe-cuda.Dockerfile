# syntax=docker/dockerfile:1
# The CUDA probe (NVIDIA A100/H100/H200...): torch's CUDA build brings the CUDA runtime, cuBLAS and
# NCCL as wheels; the driver and NVML (libnvidia-ml) come from the node through the NVIDIA
# container toolkit. nvidia-ml-py reads serials, link state, ECC, clocks and power where NVML allows.
#   docker build -f images/probe-cuda.Dockerfile -t ghcr.io/accelqual/probe-cuda:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY probes ./probes
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# torch as pinned in pyproject.toml, built for CUDA 12.8 (drivers >= 570).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG NVIDIA_ML_PY_VERSION=13.615.71
LABEL org.opencontainers.image.title="accelqual probe (CUDA)" \
      org.opencontainers.image.licenses="Apache-2.0"
# The container toolkit mounts the driver's compute libraries and NVML (utility) for these.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PATH=/opt/accelqual/bin:$PATH \
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
        "nvidia-ml-py==${NVIDIA_ML_PY_VERSION}" \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /wheels/accelqual-*.whl \
    && rm -rf /wheels /tmp/requirements-probe.txt \
    && groupadd --gid 65532 accelqual \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin accelqual
USER 65532:65532
ENTRYPOINT ["accelqual", "probe"]
