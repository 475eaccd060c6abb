package kindcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/hubreplay/hubreplay/proxy"
)

// DefaultName is the cluster hubreplay makes and reuses.
const DefaultName = "hubreplay"

// Cluster is a kind cluster for staging.
type Cluster struct {
	Name string
	// WorkDir is the host directory every node mounts at MountPath:
	// traces go in, results come out.
	WorkDir string
	// HostPort is the host port the proxy's NodePort is mapped to.
	HostPort int
	// Workers are nodes beside the control plane (0: one node does all).
	Workers int
	Log     *slog.Logger
}

// Config is the kind cluster config: the work directory mounted on every
// node, and the proxy's NodePort mapped to the host on the control plane,
// so that the replay can measure the proxy without an API-server
// port-forward in between.
func (c *Cluster) Config() (*v1alpha4.Cluster, error) {
	dir, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return nil, err
	}
	mount := []v1alpha4.Mount{{HostPath: dir, ContainerPath: MountPath}}
	cfg := &v1alpha4.Cluster{TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"}, Name: c.Name}
	cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, ExtraMounts: mount,
		ExtraPortMappings: []v1alpha4.PortMapping{{ContainerPort: NodePort, HostPort: int32(c.HostPort), ListenAddress: "127.0.0.1", Protocol: v1alpha4.PortMappingProtocolTCP}}})
	for range c.Workers {
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, ExtraMounts: mount})
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}

// ErrNoEngine says no container engine answers: kind needs Docker.
var ErrNoEngine = errors.New("no Docker engine answers")

func (c *Cluster) provider() (*cluster.Provider, error) {
	if host, ok := proxy.DockerEngine(); !ok {
		return nil, fmt.Errorf("kind cluster %s: %w at %s (the docker client alone is not enough); the kind backend needs one, the local backend does not", c.Name, ErrNoEngine, host)
	}
	return cluster.NewProvider(cluster.ProviderWithDocker()), nil
}

// Status says whether the cluster exists, and its nodes.
func (c *Cluster) Status() (bool, []string, error) {
	p, err := c.provider()
	if err != nil {
		return false, nil, err
	}
	names, err := p.List()
	if err != nil {
		return false, nil, fmt.Errorf("list kind clusters: %w", err)
	}
	if !slices.Contains(names, c.Name) {
		return false, nil, nil
	}
	ns, err := p.ListNodes(c.Name)
	if err != nil {
		return true, nil, fmt.Errorf("kind cluster %s: %w", c.Name, err)
	}
	var out []string
	for _, n := range ns {
		out = append(out, n.String())
	}
	return true, out, nil
}

// Up creates the cluster, or reuses it when one of that name exists, and
// returns its kubeconfig; created says which.
// (kind's library takes no context: creating waits up to three minutes
// for the nodes to be ready.)
func (c *Cluster) Up() (kubeconfig string, created bool, err error) {
	p, err := c.provider()
	if err != nil {
		return "", false, err
	}
	names, err := p.List()
	if err != nil {
		return "", false, fmt.Errorf("list kind clusters: %w", err)
	}
	if !slices.Contains(names, c.Name) {
		if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
			return "", false, fmt.Errorf("kind cluster %s: %w", c.Name, err)
		}
		cfg, err := c.Config()
		if err != nil {
			return "", false, err
		}
		if err := p.Create(c.Name, cluster.CreateWithV1Alpha4Config(cfg), cluster.CreateWithWaitForReady(3*time.Minute),
			cluster.CreateWithDisplayUsage(false), cluster.CreateWithDisplaySalutation(false)); err != nil {
			return "", false, fmt.Errorf("create kind cluster %s: %w", c.Name, err)
		}
		created = true
	}
	kc, err := p.KubeConfig(c.Name, false)
	if err != nil {
		return "", created, fmt.Errorf("kind cluster %s: kubeconfig: %w", c.Name, err)
	}
	return kc, created, nil
}

// Down deletes the cluster.
func (c *Cluster) Down() error {
	p, err := c.provider()
	if err != nil {
		return err
	}
	if err := p.Delete(c.Name, ""); err != nil {
		return fmt.Errorf("delete kind cluster %s: %w", c.Name, err)
	}
	return nil
}

// LoadImage puts a local image on every node, as 'kind load docker-image'
// does: docker save, then each node's containerd imports the archive.
func (c *Cluster) LoadImage(ctx context.Context, image string) error {
	p, err := c.provider()
	if err != nil {
		return err
	}
	nodes, err := p.ListInternalNodes(c.Name)
	if err != nil {
		return fmt.Errorf("kind cluster %s: %w", c.Name, err)
	}
	for _, n := range nodes {
		save := exec.CommandContext(ctx, "docker", "save", image)
		out, err := save.StdoutPipe()
		if err != nil {
			return err
		}
		if err := save.Start(); err != nil {
			return fmt.Errorf("docker save %s: %w", image, err)
		}
		loadErr := nodeutils.LoadImageArchive(n, out)
		_, _ = io.Copy(io.Discard, out)
		if err := errors.Join(loadErr, save.Wait()); err != nil {
			return fmt.Errorf("load %s into node %s: %w", image, n, err)
		}
	}
	return nil
}

// Client connects to a cluster with its kubeconfig.
func Client(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig))
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}
