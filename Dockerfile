# CPU image of convscope; starts the app the same way as the README (`make run`).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY app ./app
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir --upgrade pip \
 && .venv/bin/pip install --no-cache-dir -e . \
 && touch .venv/.installed
COPY templates ./templates
COPY static ./static
COPY models ./models
ENV CONVSCOPE_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["make", "run", "HOST=0.0.0.0", "PORT=8000"]
