# One image for every role: `gateway serve`, `gateway worker`, `gateway mailer` (or `gateway run`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY channels ./channels
COPY worker ./worker
COPY mailer ./mailer
COPY designer ./designer
RUN pip install . && useradd --uid 10001 --home-dir /app --no-create-home gateway
COPY config ./config
RUN mkdir -p /app/var && chown gateway /app/var

USER gateway
ENV GATEWAY_HOST=0.0.0.0 GATEWAY_STORIES=/app/config/stories GATEWAY_EMAILS=/app/config/emails
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["gateway", "run"]
