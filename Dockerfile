# AI gateway image: one image, either role (see Procfile).
#
#   web (default CMD):  gunicorn -c config/gunicorn.conf.py api.wsgi:app
#   worker:             docker run ... <image> python -m workers [MODEL ...] [--processes N]
#
# Every command starts through tools/container/entrypoint.py: it checks the container's own settings
# (the stand-ins, the published address: one `config error:` line per problem, exit 2), then
# execs the command, which runs as PID 1 and gets SIGTERM directly.
#
# Configuration is the environment (README, "Configuration reference") plus the gateway config
# file at /etc/ai-gateway/config.yaml, which is NOT baked in: mount one. Runs as a non-root user
# with a read-only root filesystem: it writes only to /tmp and /var/log/ai-gateway (mount a tmpfs
# and a volume there; README, "Running in containers").
#
# PYTHON_BASE: any Debian-based image with Python 3.11 and its venv module. Where Docker Hub
# cannot be reached, `make test-container` passes a local Debian 12 base made with debootstrap
# (tools/container/base_image.py).
ARG PYTHON_BASE=python:3.11-slim

FROM ${PYTHON_BASE} AS gateway

# Fixed numeric ids so Kubernetes `runAsNonRoot` can verify the user without a lookup.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

# A virtual environment: the same layout on python:3.11-slim and on Debian's own python3.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

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

# Bytecode compiled now: at run time the root filesystem may be read-only.
RUN python -m compileall -q api shared workers config sandbox tools \
    && mkdir -p /var/log/ai-gateway /etc/ai-gateway \
    && chown 10001:10001 /var/log/ai-gateway

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    LOG_DIR=/var/log/ai-gateway \
    CONFIG_FILE_PATH=/etc/ai-gateway/config.yaml

USER 10001:10001

# 8080: API ($PORT); 9090: metrics ($METRICS_PORT).
EXPOSE 8080 9090

# The web role's /health (liveness, no dependencies); a worker container has no HTTP server, so
# there the check is that its supervisor, PID 1, still runs (tools/container/health.py).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "tools.container.health"]

ENTRYPOINT ["python", "-m", "tools.container.entrypoint"]
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"]

# The rq-dashboard service's image (compose: `target: dashboard`): the gateway's plus rq-dashboard,
# whose pins are those of requirements-dev.txt.
FROM gateway AS dashboard
USER root
COPY requirements-dev.txt ./
RUN grep -E '^(rq-dashboard|six)==' requirements-dev.txt > /tmp/dashboard-requirements.txt \
    && pip install --no-cache-dir --disable-pip-version-check -r /tmp/dashboard-requirements.txt \
    && rm /tmp/dashboard-requirements.txt requirements-dev.txt \
    && python -m compileall -q /opt/venv
USER 10001:10001
EXPOSE 9181
HEALTHCHECK NONE
# --disable-delete: its actions have no CSRF protection (docs/operations.md, "The queues").
CMD ["python", "-m", "tools.rq_dashboard", "--bind", "0.0.0.0", "--port", "9181", "--disable-delete"]

# The default target: the gateway.
FROM gateway
