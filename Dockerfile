# TraceMem web/worker/beat image. Build: docker build -t tracemem .   Run all: docker compose up -d
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=tracemem_site.settings \
    TRACEMEM_VAR_DIR=/app/var \
    TRACEMEM_HOST=0.0.0.0 \
    TRACEMEM_PORT=8000

WORKDIR /app

# Dependencies first (pinned in pyproject.toml), so code changes do not reinstall them.
COPY pyproject.toml ./
RUN pip install .

COPY . .

# Static files are baked into the image; a throwaway secret is enough for collectstatic.
# Bytecode compiled once here (PYTHONDONTWRITEBYTECODE: no process writes it at run time).
RUN DJANGO_SECRET_KEY=build-only-not-secret python manage.py collectstatic --noinput -v 0 \
    && python -m compileall -q -x '/(tests|var)/' /app \
    && useradd --system --uid 10001 --home-dir /app tracemem \
    && mkdir -p /app/var \
    && chown -R tracemem /app/var

USER tracemem
EXPOSE 8000

# The web server; the same image runs the workers (scripts/worker.sh) and the beat (scripts/beat.sh).
CMD ["scripts/serve.sh"]
