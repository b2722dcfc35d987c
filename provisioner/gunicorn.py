"""gunicorn settings for production (Procfile / docker-compose).

gunicorn reads this file before Django starts, so these few tunables cannot live in settings.py;
they are read with the same loud helpers (provisioner/env.py) and listed in the README table."""

import multiprocessing

from provisioner.env import env_int, env_str

bind = env_str("GUNICORN_BIND", "0.0.0.0:8000")
workers = env_int("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1)
threads = env_int("GUNICORN_THREADS", 2)
timeout = 60
graceful_timeout = 30
accesslog = "-"
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1")
