# SessionValidator image: a venv built in one stage, copied into a slim,
# non-root runtime with no compilers, no pip, no pip caches and no tests.
# `make image` builds it with docker or podman; `make test-image` builds and
# runs it (README "Deploy").
#
# The base is a build argument. Pin it by digest for reproducible builds:
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # or: skopeo inspect
#   make image PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
# Any Debian-like image with Python 3.11 as `python` works (the tests use a
# local mmdebstrap-built bookworm).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_OFFLINE=1 installs from WHEELHOUSE (a directory of the build context,
# filled by `make wheelhouse`) with --no-index: for air-gapped builders.
ARG PIP_OFFLINE=0
ARG WHEELHOUSE=requirements
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
COPY ${WHEELHOUSE} /wheelhouse
# Every package pinned with its hashes (requirements/*.lock, from `make lock`).
# /opt/build holds the build backend only; /opt/venv gets no pip at all.
COPY requirements/runtime.lock requirements/build.lock /src/requirements/
COPY scripts/reinstall-otel-proto.sh /src/scripts/
RUN set -eu; \
    if [ "$PIP_OFFLINE" = 1 ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi; \
    python -m venv /opt/build; \
    /opt/build/bin/pip install --require-hashes --only-binary=:all: -r /src/requirements/build.lock; \
    python -m venv --without-pip /opt/venv; \
    /opt/build/bin/pip --python /opt/venv/bin/python install --no-compile --require-hashes --only-binary=:all: \
      -r /src/requirements/runtime.lock; \
    /src/scripts/reinstall-otel-proto.sh /opt/build/bin/pip --python /opt/venv/bin/python
# The application after its dependencies: a code change does not rebuild them.
COPY clients/python /src/clients/python
COPY service/pyproject.toml /src/service/pyproject.toml
COPY service/src /src/service/src
RUN set -eu; \
    /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /src/dist /src/clients/python /src/service; \
    /opt/build/bin/pip --python /opt/venv/bin/python install --no-index --no-deps --no-compile /src/dist/*.whl; \
    /opt/venv/bin/python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sessionvalidator" \
      org.opencontainers.image.description="gRPC authority for express-session (connect.sid) cookies"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SESSIONVALIDATOR_LISTEN=[::]:50051
COPY --from=build /opt/venv /opt/venv
# A numeric, non-root user: works with runAsNonRoot and a read-only root
# filesystem (the service writes nothing; give it a tmpfs at /tmp if you like).
USER 65532:65532
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-m", "sessionvalidator_service", "healthcheck"]
ENTRYPOINT ["python", "-m", "sessionvalidator_service"]
CMD ["serve"]
