package kindcluster

import (
	"context"
	"fmt"

	"github.com/testcontainers/testcontainers-go"

	"github.com/hubreplay/hubreplay/proxy"
)

// BuildImage builds hubreplay's image from a source tree (its Dockerfile)
// with the Docker engine, as repo:tag, and keeps it for loading into the
// nodes.
func BuildImage(ctx context.Context, srcDir, repo, tag string) (string, error) {
	if host, ok := proxy.DockerEngine(); !ok {
		return "", fmt.Errorf("build image %s:%s: %w at %s", repo, tag, ErrNoEngine, host)
	}
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	defer p.Close()
	req := testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context: srcDir, Dockerfile: "Dockerfile", Repo: repo, Tag: tag, KeepImage: true}}
	name, err := p.BuildImage(ctx, &req)
	if err != nil {
		return "", fmt.Errorf("build image %s:%s from %s: %w", repo, tag, srcDir, err)
	}
	return name, nil
}
