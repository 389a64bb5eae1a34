# syntax=docker/dockerfile:1
# Multi-arch images of the edge node and the central service:
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 --target edge -t outpost/edge .
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 --target core -t outpost/core .
#
# The build runs on the build machine's architecture and cross-compiles
# (CGO off), so no emulation is needed to build arm images.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS TARGETARCH TARGETVARIANT
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN set -eux; \
    GOARM="${TARGETVARIANT#v}"; \
    for bin in edge core; do \
      CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=$GOARM \
        go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X github.com/outpost-edge/outpost/internal/buildinfo.version=${VERSION}" \
        -o /out/$bin ./$bin; \
    done; \
    mkdir -p /out/data /out/core-data

# Runtime: no shell, no package manager; uid 65532 (nonroot). The root
# filesystem can be mounted read-only: only /data is written.
FROM gcr.io/distroless/static-debian12:nonroot AS edge
COPY --from=build /out/edge /usr/local/bin/edge
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME ["/data"]
# The node refuses to listen beyond loopback without MQTT auth. This image
# allows anonymous clients so that `docker run` works out of the box, and the
# node logs a loud warning saying so. In production mount a config with
# auth.users (-config /etc/outpost/edge.yaml) and set this to false.
ENV OUTPOST_AUTH_ALLOW_ANONYMOUS=true
EXPOSE 1883 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
  CMD ["/usr/local/bin/edge", "healthcheck", "-http", "127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/edge", "-data", "/data", "-mqtt", "0.0.0.0:1883", "-http", "0.0.0.0:8080"]

FROM gcr.io/distroless/static-debian12:nonroot AS core
COPY --from=build /out/core /usr/local/bin/core
COPY --from=build --chown=65532:65532 /out/core-data /core-data
VOLUME ["/core-data"]
EXPOSE 4222 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
  CMD ["/usr/local/bin/core", "healthcheck", "-http", "127.0.0.1:8081"]
ENTRYPOINT ["/usr/local/bin/core", "-data", "/core-data", "-http", "0.0.0.0:8081"]
