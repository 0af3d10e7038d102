# CPU image of the FunASR-compatible WebSocket server.
#   docker build -t funasr-wss-server .
#   docker run -p 10096:10096 -v $PWD/models:/models funasr-wss-server
# The 2pass profile (online and 2pass modes) from the same image:
#   docker run -p 10096:10096 -v $PWD/models:/models --entrypoint funasr-wss-server-2pass \
#     funasr-wss-server --download-model-dir /models --port 10096
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY server ./server
RUN pip install . && useradd --create-home --uid 1000 funasr && mkdir /models && chown funasr /models

USER funasr
VOLUME ["/models"]
EXPOSE 10096
ENTRYPOINT ["funasr-wss-server", "--download-model-dir", "/models", "--port", "10096"]
