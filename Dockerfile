# syntax=docker/dockerfile:1
# Build a static kafkaguard binary, then ship it alone on a distroless base
# as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/kafkaguard ./cmd/kafkaguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kafkaguard /usr/local/bin/kafkaguard
COPY deploy/kafkaguard.yaml /etc/kafkaguard/kafkaguard.yaml
USER nonroot:nonroot
EXPOSE 9092 9644
ENTRYPOINT ["/usr/local/bin/kafkaguard"]
CMD ["run", "--config", "/etc/kafkaguard/kafkaguard.yaml"]
