# CPU image of the FunASR-compatible WebSocket server (see the README's "Docker" section).
#
#   docker build -t funasr-wss-server .
#   docker run -d --name funasr -p 10096:10096 -v funasr-models:/models --stop-timeout 40 funasr-wss-server
#
# The default command serves the offline profile on 0.0.0.0:10096 (ws:// and wss:// on the same
# port), downloads FunASR's default models from ModelScope into the /models volume on the first
# start and reuses them afterwards. For the 2pass profile, give the whole command:
#
#   docker run -d -p 10096:10096 -v funasr-models:/models funasr-wss-server \
#     funasr-wss-server-2pass --listen-ip 0.0.0.0 --port 10096 \
#     --download-model-dir /models --self-signed-dir /models/.tls
#
# Layout of /models (a named volume, or a host directory writable by uid 1000):
#   /models/<owner>/<name>/  ModelScope downloads; a model already there is used without the hub
#   /models/.modelscope/     ModelScope's own cache (MODELSCOPE_CACHE)
#   /models/.tls/            the self-signed certificate, made on the first start and kept
#
# linux/amd64 and linux/arm64 (Linux aarch64 servers and boards, Apple-silicon Docker hosts): the
# python image is published for both, and every dependency installs from a wheel on both, for the
# image's Python too (.ci/platform_closure.py checks that in CI). Nothing here names an
# architecture: `docker build` on an arm64 host makes an arm64 image. Both in one image, with BuildKit:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/funasr-wss-server:TAG --push .
#
# (the default builder makes multi-platform images with the containerd image store only: otherwise
# `docker buildx create --use` first. On one machine the other architecture runs under QEMU,
# `docker run --privileged --rm tonistiigi/binfmt --install all`: slower, the same image.)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the project and its dependencies into a virtual environment -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY server ./server
COPY client ./client
# No extras: the test and bench extras (pytest, funasr-onnx, matplotlib) have no place at run time.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/funasr-wss-server --help > /dev/null

# ---- runtime: the environment only, run by an unprivileged user ---------------------------------
FROM ${PYTHON_IMAGE}
ARG FUNASR_UID=1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELSCOPE_CACHE=/models/.modelscope
COPY --from=build /opt/venv /opt/venv
# /models is created owned by the user, so a new named volume starts out writable for it.
RUN useradd --uid "${FUNASR_UID}" --create-home --shell /usr/sbin/nologin funasr \
    && mkdir /models \
    && chown funasr:funasr /models
USER ${FUNASR_UID}
WORKDIR /home/funasr
VOLUME ["/models"]
EXPOSE 10096
# SIGTERM (docker stop) drains: utterances in flight get --shutdown-grace (30 s) to finish, so
# give the container more than that before the SIGKILL (docker stop -t 40, compose stop_grace_period).
STOPSIGNAL SIGTERM
# Healthy = alive and the models loaded: /livez answers whenever the process does, and its JSON
# says "loaded". Not /health: that is readiness for balancers, 503 also when every --max-connections
# slot is taken, which is no reason to call a working container unhealthy (docs/scaling-out.md).
# Plain http is served on the TLS port too. Proxies are bypassed: HTTP_PROXY set for ModelScope
# downloads must not capture 127.0.0.1. The start period covers the first start's downloads.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20m --retries=3 \
    CMD ["python", "-c", "import json, urllib.request as r; raise SystemExit(0 if json.load(r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:10096/livez', timeout=8))['loaded'] else 1)"]
CMD ["funasr-wss-server", "--listen-ip", "0.0.0.0", "--port", "10096", "--download-model-dir", "/models", "--self-signed-dir", "/models/.tls"]
