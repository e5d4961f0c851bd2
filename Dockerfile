# envlabel daemon image: envlabel and its hash-locked dependencies installed into a virtualenv in one stage,
# copied into a slim runtime that runs as uid 10001 and writes only to /var/lib/envlabel (the SQLite store, a
# volume) and /tmp, so it runs with a read-only root filesystem. Plain Dockerfile syntax: no BuildKit needed.
#
# Pin the base by digest: the default below is the tag, because the digest must be read from the registry at
# build time, not copied from a document. Resolve it and pass it (docs/helm.md, "The image"):
#   docker buildx imagetools inspect python:3.12-slim-bookworm      # the "Digest:" line
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:<digest> -t envlabel:dev .
# Run: docker run -p 8080:8080 -v envlabel:/var/lib/envlabel \
#   -v $PWD/envlabel.yaml:/etc/envlabel/envlabel.yaml:ro envlabel:dev
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# every dependency at the version and sha256 of requirements.lock (linux x86_64 wheels; no compiler needed)
COPY requirements.lock ./
RUN python -m venv /opt/envlabel \
 && /opt/envlabel/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY envlabel ./envlabel
COPY discovery ./discovery
COPY labelers ./labelers
COPY store ./store
COPY service ./service
# envlabel itself, without resolving anything: its dependencies are all in the lock above
RUN /opt/envlabel/bin/pip install --no-deps . \
 && /opt/envlabel/bin/pip check

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/envlabel/bin:$PATH \
    HOME=/tmp \
    XDG_DATA_HOME=/var/lib \
    ENVLABEL_CONFIG=/etc/envlabel/envlabel.yaml
RUN groupadd --system --gid ${UID} envlabel \
 && useradd --system --uid ${UID} --gid ${UID} --no-create-home --home-dir /var/lib/envlabel \
      --shell /usr/sbin/nologin envlabel \
 && install -d -o ${UID} -g ${UID} -m 0750 /var/lib/envlabel \
 && install -d -m 0755 /etc/envlabel
# the same base image, so the virtualenv's interpreter path is valid here
COPY --from=builder /opt/envlabel /opt/envlabel
USER 10001:10001
WORKDIR /var/lib/envlabel
VOLUME ["/var/lib/envlabel"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["envlabel"]
# the config mounted at /etc/envlabel/envlabel.yaml (the chart's ConfigMap mounts it there too)
CMD ["serve", "--config", "/etc/envlabel/envlabel.yaml", "--host", "0.0.0.0"]
