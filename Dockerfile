# syntax=docker/dockerfile:1.7
# SessionValidator image: a venv built in one stage, copied into a slim,
# non-root runtime with no compilers, pip caches or build tools.
#
# Pin the base by digest in your registry mirror (docker buildx imagetools
# inspect python:3.11-slim-bookworm) and pass it with --build-arg.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (pinned, every transitive package), then the app: code
# changes do not rebuild the dependency layer.
COPY requirements/runtime.txt /src/requirements/runtime.txt
RUN pip install --no-compile -r /src/requirements/runtime.txt
COPY clients/python /src/clients/python
COPY service/pyproject.toml /src/service/pyproject.toml
COPY service/src /src/service/src
RUN pip install --no-compile --no-deps /src/clients/python /src/service \
 && python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sessionvalidator" \
      org.opencontainers.image.description="gRPC authority for express-session (connect.sid) cookies"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SESSIONVALIDATOR_LISTEN=[::]:50051
COPY --from=build /opt/venv /opt/venv
# A numeric, non-root user: works with runAsNonRoot and a read-only root filesystem.
USER 65532:65532
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-m", "sessionvalidator_service", "healthcheck"]
ENTRYPOINT ["python", "-m", "sessionvalidator_service"]
CMD ["serve"]
