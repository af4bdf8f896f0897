# The Herdsman operator image: `docker build -t herdsman:0.1.0 .`
#
# Two stages: the first installs the package and its dependencies into a virtualenv (every
# dependency ships a manylinux wheel, so no compiler is needed even there); the second copies
# only that virtualenv onto a fresh slim Python, without pip, and runs it as a non-root user.
# The `aws` and `influxdb` extras bring the CloudWatch/SigV4 and InfluxDB providers' clients, so
# every Argo Rollouts metric provider works out of the box.
# The chart runs it with a read-only root filesystem: nothing here writes outside /tmp.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/herdsman \
 && /opt/herdsman/bin/pip install --no-compile '.[aws,influxdb]' \
 && /opt/herdsman/bin/python -m compileall -q /opt/herdsman/lib \
 && /opt/herdsman/bin/pip uninstall --yes pip setuptools

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="herdsman" \
      org.opencontainers.image.description="Kubernetes progressive-delivery operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own pip is not needed at run time either.
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel \
 && groupadd --system --gid 65532 herdsman \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin herdsman
COPY --from=build /opt/herdsman /opt/herdsman
ENV PATH=/opt/herdsman/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 8080: /metrics (--metrics-port), 8081: Kopf's liveness endpoint (--liveness).
EXPOSE 8080 8081
ENTRYPOINT ["herdsman"]
CMD ["run", "--require-peering", "--liveness=http://0.0.0.0:8081/healthz", "--metrics-port=8080"]
