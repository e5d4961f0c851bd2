# syntax=docker/dockerfile:1
# envlabel daemon image: wheels built in one stage, installed into a slim runtime that runs as uid 10001 and
# writes only to /var/lib/envlabel (the SQLite store, a volume) and /tmp, so it runs with a read-only root
# filesystem. Build: docker build -t envlabel:dev .   Run: docker run -p 8080:8080 -v envlabel:/var/lib/envlabel
#   -v $PWD/envlabel.yaml:/etc/envlabel/envlabel.yaml:ro envlabel:dev serve --host 0.0.0.0 --config /etc/envlabel/envlabel.yaml
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY envlabel ./envlabel
COPY discovery ./discovery
COPY labelers ./labelers
COPY store ./store
COPY service ./service
# every dependency as a wheel, so the runtime stage installs offline and needs no compiler
RUN pip wheel --wheel-dir /wheels ".[daemon]"

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    XDG_DATA_HOME=/var/lib
RUN groupadd --system --gid ${UID} envlabel \
 && useradd --system --uid ${UID} --gid ${UID} --no-create-home --home-dir /var/lib/envlabel \
      --shell /usr/sbin/nologin envlabel \
 && install -d -o ${UID} -g ${UID} -m 0750 /var/lib/envlabel \
 && install -d -m 0755 /etc/envlabel
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "envlabel[daemon]"
USER 10001:10001
WORKDIR /var/lib/envlabel
VOLUME ["/var/lib/envlabel"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["envlabel"]
CMD ["serve", "--host", "0.0.0.0"]
