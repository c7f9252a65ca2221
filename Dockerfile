# convscope's image: `docker build -t convscope . && docker run -p 8000:8000 convscope`.
#
# Two stages. `build` makes /opt/venv: first the locked dependencies (a layer that only a change of
# requirements.lock rebuilds), then convscope's wheel (non-editable: templates, static files and
# models are package data). The runtime image copies that venv, runs as an unprivileged user, and
# starts `convscope serve` as PID 1 (exec form: it gets SIGTERM and shuts down in order), the same
# start as the README's `make run`; uploads and caches go to the /data volume.
#
# TORCH_INDEX: where torch and torchvision come from. The default, PyTorch's CPU wheel index, gives
# a CPU-only image; `--build-arg TORCH_INDEX=` installs the lock's own wheels (CUDA builds from PyPI,
# with their nvidia-* libraries). Sizes: see the README's Docker section.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.lock docker/install-deps.sh /tmp/deps/
RUN sh /tmp/deps/install-deps.sh /opt/venv/bin/pip /tmp/deps/requirements.lock "$TORCH_INDEX"
COPY pyproject.toml README.md LICENSE /src/
COPY app /src/app
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation /src \
 && /opt/venv/bin/pip check

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --create-home --home-dir /home/convscope convscope \
 && mkdir /data && chown convscope:convscope /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH CONVSCOPE_DATA_DIR=/data PYTHONUNBUFFERED=1
USER convscope
WORKDIR /home/convscope
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
CMD ["convscope", "serve", "--host", "0.0.0.0", "--port", "8000"]
