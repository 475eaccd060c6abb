package kindcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"

	"github.com/hubreplay/hubreplay/proxy"
)

// Stats fetches a path from a node's kubelet.
type Stats func(ctx context.Context, node, path string) ([]byte, error)

// KubeletStats reaches the kubelets through the API server's node proxy.
func KubeletStats(cs kubernetes.Interface) Stats {
	return func(ctx context.Context, node, path string) ([]byte, error) {
		b, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", path).DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("kubelet %s %s: %w", node, path, err)
		}
		return b, nil
	}
}

// summary is the part of the kubelet's stats/summary read here.
type summary struct {
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Containers []struct {
			Name string `json:"name"`
			CPU  struct {
				UsageCoreNanoSeconds uint64 `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				RSSBytes        int64 `json:"rssBytes"`
				WorkingSetBytes int64 `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"containers"`
	} `json:"pods"`
}

// Sample reads one container's figures from its node's kubelet: memory
// and CPU from stats/summary, file descriptors and sockets from cAdvisor's
// metrics. (Sockets by TCP state are not there: a pod's sockets are in its
// own network namespace, which only the node could look into.)
func Sample(ctx context.Context, stats Stats, node, namespace, pod, container string) (proxy.Sample, error) {
	s := proxy.Sample{At: time.Now()}
	b, err := stats(ctx, node, "stats/summary")
	if err != nil {
		return s, err
	}
	var sum summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return s, fmt.Errorf("kubelet %s stats/summary: %w", node, err)
	}
	found := false
	for _, p := range sum.Pods {
		if p.PodRef.Namespace != namespace || p.PodRef.Name != pod {
			continue
		}
		for _, c := range p.Containers {
			if c.Name == container {
				s.RSS, s.CgroupMemory = c.Memory.RSSBytes, c.Memory.WorkingSetBytes
				s.CPU = time.Duration(c.CPU.UsageCoreNanoSeconds)
				found = true
			}
		}
	}
	if !found {
		return s, nil // not running (restarting, or not yet reported)
	}
	s.Up = true
	b, err = stats(ctx, node, "metrics/cadvisor")
	if err != nil {
		return s, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return s, fmt.Errorf("kubelet %s metrics/cadvisor: %w", node, err)
	}
	pick := func(name string) int {
		f := fams[name]
		if f == nil {
			return 0
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["namespace"] == namespace && l["pod"] == pod && l["container"] == container {
				return int(m.GetGauge().GetValue())
			}
		}
		return 0
	}
	s.FDs, s.SocketFDs = pick("container_file_descriptors"), pick("container_sockets")
	return s, nil
}
