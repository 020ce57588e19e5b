# hastack images for users with a registry. The lab builds the same image without Docker
# (tests/harness/image.py): same package list (image/packages.txt), same layout, same
# entry points. Targets:
#   docker build --target sidecar  -t hastack:dev .   # privileged sidecars (blockrepl, heartbeat, mon, fsinit)
#   docker build --target operator -t hastack-operator:dev .   # the operator, non-root
ARG DEBIAN=bookworm

FROM debian:${DEBIAN}-slim AS os
COPY image/packages.txt /tmp/packages.txt
RUN apt-get update \
 && grep -v '^\s*#' /tmp/packages.txt | grep -v '^\s*$' | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man /usr/share/locale /tmp/packages.txt \
 && useradd --uid 65532 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hastack

FROM golang:1.26-bookworm AS gate
COPY sidecars/gate /src/gate
RUN cd /src/gate && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o /out/hastack-gate .

FROM os AS build
# gcc, the Python headers and libssl-dev build blockrepl's compiled write path (libssl3, which
# it links, is in the os stage with python3)
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip gcc libc6-dev python3-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml /src/
COPY operator /src/operator
COPY sidecars /src/sidecars
# Dependencies and the project in separate trees: the same two layers the lab's builder makes.
RUN pip3 install --break-system-packages --no-cache-dir --target /opt/hastack/lib \
      $(python3 -c "import tomllib; print(' '.join(tomllib.load(open('/src/pyproject.toml','rb'))['project']['dependencies']))") \
 && pip3 install --break-system-packages --no-cache-dir --no-deps --target /opt/hastack/app /src

FROM os AS sidecar
COPY --from=build /opt/hastack/lib /opt/hastack/lib
COPY --from=build /opt/hastack/app /opt/hastack/app
COPY --from=gate /out/hastack-gate /usr/local/bin/hastack-gate
# `hastack <component>`, the command the operator's pod builders run.
RUN printf '#!/bin/sh\nexec /usr/bin/python3 -m hastack_common.cli "$@"\n' > /usr/local/bin/hastack \
 && chmod 755 /usr/local/bin/hastack
ENV PYTHONPATH=/opt/hastack/app:/opt/hastack/lib PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["/usr/bin/catatonit", "--", "/usr/bin/python3", "-m", "hastack_common.cli"]

FROM sidecar AS operator
USER 65532:65532
ENTRYPOINT ["/usr/bin/catatonit", "--", "/usr/bin/python3", "-m", "hastack_common.cli"]
CMD ["operator"]
