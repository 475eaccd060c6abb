# hubreplay's own image, for the kind backend: the fixtures and the replay
# shards run it. A static binary on scratch: nothing else is needed (the
# trace and the results are in a directory the nodes mount).
#   docker build -t hubreplay:dev .       (or: hubreplay kind image)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/hubreplay/hubreplay/internal/version.Version=${VERSION}" \
	-o /hubreplay ./cmd/hubreplay

FROM scratch
COPY --from=build /hubreplay /hubreplay
USER 65532:65532
ENTRYPOINT ["/hubreplay"]
