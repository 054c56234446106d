# syntax=docker/dockerfile:1
# The Ascend probe (Huawei Ascend 910B...): on the public CANN image of the Ascend community
# (quay.io/ascend/cann: CANN toolkit, Python 3.11, its environment set by the image), torch's
# CPU build plus torch_npu, which adds the `npu` device. The driver and /dev/davinci* come from the
# node through the Ascend device plugin. CANN, torch and torch_npu versions must match each
# other (torch_npu's version table); check the tag of BASE_IMAGE against it before building.
#   docker build -f images/probe-ascend.Dockerfile -t ghcr.io/accelqual/probe-ascend:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG BASE_IMAGE=quay.io/ascend/cann:8.3.rc1-910b-ubuntu22.04-py3.11

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY probes ./probes
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE_IMAGE}
# torch as pinned in pyproject.toml (CPU build: torch_npu adds the device) and its torch_npu.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_NPU_VERSION=2.13.0
LABEL org.opencontainers.image.title="accelqual probe (Ascend)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/accelqual/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    USER=accelqual
COPY images/requirements-probe.txt /tmp/requirements-probe.txt
COPY --from=wheel /wheels /wheels
# --system-site-packages: CANN's own Python modules (te, hccl tooling) stay importable.
RUN python3 -m venv --system-site-packages /opt/accelqual \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check \
        --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements-probe.txt \
        "torch-npu==${TORCH_NPU_VERSION}" \
    && /opt/accelqual/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /wheels/accelqual-*.whl \
    && rm -rf /wheels /tmp/requirements-probe.txt \
    && groupadd --gid 65532 accelqual \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin accelqual
USER 65532:65532
ENTRYPOINT ["accelqual", "probe"]
