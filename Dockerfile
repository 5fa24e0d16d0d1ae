# Tandem's production image: gunicorn for the web, the same image for Celery workers.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TANDEM_VAR_DIR=/var/lib/tandem STATIC_ROOT=/app/staticfiles
WORKDIR /app

# Editable, so that BASE_DIR (templates, static, fixtures) is /app, not site-packages.
# EXTRAS="[train]" builds the training worker's image (torch, transformers, TRL: several GB).
ARG EXTRAS=""
COPY . .
RUN pip install -e ".${EXTRAS}"
RUN SECRET_KEY=build-only python manage.py collectstatic --no-input -v 0 \
    && useradd --system --home /app tandem && mkdir -p /var/lib/tandem \
    && chown -R tandem /var/lib/tandem
USER tandem

EXPOSE 8000
CMD ["gunicorn", "tandem.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", \
     "--access-logfile", "-"]
