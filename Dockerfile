# One image for every role (worker, beat, flower, api, migrate, simulator); compose picks the command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 IMAGEGEN_HOME=/data
WORKDIR /app

COPY pyproject.toml README.md ./
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks
COPY imagegen ./imagegen
RUN pip install --upgrade pip && pip install . "flower>=2.0" \
    && useradd --create-home --uid 10001 imagegen && mkdir -p /data && chown imagegen /data

USER imagegen
CMD ["celery", "-A", "worker", "worker", "-l", "INFO"]
