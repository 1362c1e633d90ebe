# syntax=docker/dockerfile:1
# Build a static kafkaguard binary, then ship it alone on a distroless base
# as a non-root user.
#
# The image carries no config: upstreams, limits and addresses belong to the
# deployment, and a baked example would proxy to the container itself. Mount
# yours at /etc/kafkaguard/kafkaguard.yaml, e.g.
#
#   docker run --rm -p 9092:9092 \
#     -v "$PWD/kafkaguard.yaml:/etc/kafkaguard/kafkaguard.yaml:ro" kafkaguard
#
# Without it, kafkaguard exits 2 with "read config: open
# /etc/kafkaguard/kafkaguard.yaml: no such file or directory". Check a file
# first with: docker run ... kafkaguard validate --config /etc/kafkaguard/kafkaguard.yaml
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/kafkaguard ./cmd/kafkaguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kafkaguard /usr/local/bin/kafkaguard
USER nonroot:nonroot
# 9092: the first listener of deploy/kafkaguard.yaml. The admin server
# (admin.address) belongs on loopback; to scrape metrics from outside the
# container set admin.metrics_address, e.g. 0.0.0.0:9645, and publish it.
EXPOSE 9092
ENTRYPOINT ["/usr/local/bin/kafkaguard"]
CMD ["run", "--config", "/etc/kafkaguard/kafkaguard.yaml"]
