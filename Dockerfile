# Pantau services (ingest, rules, api, vision, simulators): one image, the
# sub-command picks the stage. Slim, non-root, dependencies from the lock file.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY pantau ./pantau
COPY ingest ./ingest
COPY bridges ./bridges
COPY vision ./vision
COPY rules ./rules
COPY api ./api
COPY dashboards ./dashboards
COPY simulators ./simulators
COPY demo ./demo
COPY config ./config
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app pantau \
    && install -d -o pantau -g pantau /var/lib/pantau/spool /var/lib/pantau/evidence
WORKDIR /app
COPY --from=build --chown=pantau /app /app
ENV PATH=/app/.venv/bin:$PATH PANTAU_CONFIG_DIR=/app/config PYTHONUNBUFFERED=1
USER pantau
ENTRYPOINT ["pantau"]
CMD ["--help"]
