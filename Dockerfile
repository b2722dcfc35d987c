FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# Caddy: the service gateway (docker-compose's gateway process, `manage.py rungateway`)
RUN apt-get update && apt-get install -y --no-install-recommends caddy && rm -rf /var/lib/apt/lists/*
# the runtime dependencies of pyproject.toml, pinned by the generated lock (as `make run` installs them)
COPY pyproject.toml requirements.lock ./
RUN pip install --no-cache-dir "$(grep -m1 '^uv==' requirements.lock)" \
 && uv pip install --system --no-cache --compile-bytecode -r pyproject.toml -c requirements.lock \
 && pip uninstall -q -y uv
COPY . .
RUN useradd --create-home app && chown -R app /app
USER app
EXPOSE 8000
CMD ["gunicorn", "provisioner.wsgi:application", "-c", "provisioner/gunicorn.py"]
