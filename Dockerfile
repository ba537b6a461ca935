# kumo's controller image: `docker build -t ghcr.io/kumo-dev/kumo:0.1.0 .`
#
# Two stages on the same pinned base. The build stage installs kumo and its runtime dependencies,
# at the versions pinned in constraints.txt, into a virtualenv (every dependency ships wheels, so
# no compiler is needed); the final stage copies only that virtualenv and runs it as an
# unprivileged user with no shell tooling added. deploy/deployment.yaml runs it with a read-only
# root filesystem and a writable /tmp.

FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/kumo

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY kumo/ kumo/
COPY controller/ controller/
COPY providers/ providers/
# Runtime dependencies only (no test extra); pip byte-compiles everything it installs, so the
# read-only image never needs to write __pycache__. The import check fails the build when a
# runtime dependency is missing (-I: the installed kumo, not the source tree in /src).
RUN /opt/kumo/bin/pip install --no-cache-dir -c constraints.txt . \
    && /opt/kumo/bin/python -I -c "import kumo.controller.runtime.operator, kumo.providers.aws, kumo.providers.gcp"


FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="kumo" \
      org.opencontainers.image.description="Cloud databases and buckets as Kubernetes objects" \
      org.opencontainers.image.source="https://github.com/kumo-dev/kumo" \
      org.opencontainers.image.licenses="Apache-2.0"

# A named user so tools that look the uid up find one; 65532 is the uid deploy/ runs as.
RUN groupadd --system --gid 65532 kumo \
    && useradd --system --no-log-init --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin kumo

COPY --from=build /opt/kumo /opt/kumo

ENV PATH=/opt/kumo/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

USER 65532:65532
WORKDIR /tmp
# 8080: /healthz (--health-port), 9090: Prometheus metrics (--metrics-port)
EXPOSE 8080 9090

ENTRYPOINT ["kumo"]
CMD ["run"]
