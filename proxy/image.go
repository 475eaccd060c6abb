package proxy

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
)

// Image candidates run in a container through testcontainers-go, one
// container per start, on the host's network: the candidate listens on
// the same loopback ports as any other and reaches the fixtures there, and
// its main process shows in this machine's /proc for sampling. The memory
// limit is the container's, as in a pod; the runtime says when the OOM
// killer struck.

func imageProgram(s Spec) (*Program, error) {
	if _, ok := DockerEngine(); !ok {
		return nil, imageUnavailable(s)
	}
	tag := s.Image
	if i := strings.LastIndex(tag, ":"); i >= 0 && !strings.Contains(tag[i:], "/") {
		tag = tag[i+1:]
	}
	// The jupyterhub/configurable-http-proxy images are CHP ≥ 4.2: they
	// take --metrics-port.
	return &Program{Spec: s, Version: tag, HasMetrics: true}, nil
}

// logConsumer feeds a container's log lines to the candidate's log book.
type logConsumer struct{ c *Candidate }

func (l logConsumer) Accept(log testcontainers.Log) {
	for _, line := range strings.Split(strings.TrimRight(string(log.Content), "\n"), "\n") {
		l.c.logs.add(line)
		if l.c.o.Output != nil {
			fmt.Fprintln(l.c.o.Output, line)
		}
	}
}

// launchContainer starts one container of an image candidate.
func (c *Candidate) launchContainer() error {
	ctx := context.Background()
	req := testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image: c.prog.Spec.Image,
			Cmd:   c.args(), // the image's entrypoint is configurable-http-proxy
			Env:   map[string]string{"CONFIGPROXY_AUTH_TOKEN": c.o.Token},
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.NetworkMode = "host"
				if c.o.MemoryLimit > 0 {
					hc.Memory, hc.MemorySwap = c.o.MemoryLimit, c.o.MemoryLimit
				}
			},
			LogConsumerCfg: &testcontainers.LogConsumerConfig{Consumers: []testcontainers.LogConsumer{logConsumer{c}}},
		},
		Started: true,
	}
	ctr, err := testcontainers.GenericContainer(ctx, req)
	if err != nil {
		return fmt.Errorf("start candidate %s: %w", c.prog.Spec, err)
	}
	st, err := ctr.State(ctx)
	if err != nil {
		_ = ctr.Terminate(ctx)
		return fmt.Errorf("start candidate %s: %w", c.prog.Spec, err)
	}
	p := &process{pid: st.Pid, started: time.Now(), exited: make(chan struct{})}
	p.kill = func(sig syscall.Signal) {
		grace := 5 * time.Second
		if sig == syscall.SIGKILL {
			grace = 0
		}
		_ = ctr.Stop(context.Background(), &grace)
	}
	c.mu.Lock()
	c.proc = p
	c.starts++
	c.mu.Unlock()
	go func() {
		for {
			st, err := ctr.State(ctx)
			if err != nil || !st.Running {
				if st != nil {
					p.code, p.oom = st.ExitCode, st.OOMKilled
					if p.code > 128 && p.code < 160 {
						p.signal = syscall.Signal(p.code - 128).String()
					}
				}
				_ = ctr.Terminate(ctx)
				close(p.exited)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return nil
}
