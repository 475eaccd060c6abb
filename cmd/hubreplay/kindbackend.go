//go:build !tapimage

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/kindcluster"
	"github.com/hubreplay/hubreplay/replay"
)

// kindFlags choose and shape compare's backend.
type kindFlags struct {
	backend, name, work, image, src, values string
	shards, hostPort                        int
	keep                                    bool
	// k8s: a cluster of the operators' own.
	kubeconfig, context, k8sImage, storageClass, accessMode string
}

func (k *kindFlags) add(f *pflag.FlagSet) {
	f.StringVar(&k.backend, "backend", "local", "where candidates run: local (processes here), kind (a kind cluster; needs Docker) or k8s (a cluster of yours, --kubeconfig)")
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "k8s: kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&k.context, "context", "", "k8s: kubeconfig context (default: the current one)")
	f.StringVar(&k.k8sImage, "image", "", "k8s: hubreplay's image, pullable from the cluster (REPO:TAG; see the README)")
	f.StringVar(&k.storageClass, "storage-class", "", "k8s: storage class of the workspace claim (trace in, results out; default: the cluster's)")
	f.StringVar(&k.accessMode, "access-mode", "ReadWriteMany", "k8s: the claim's access mode; ReadWriteOnce only where all shards can run on one node")
	f.StringVar(&k.name, "kind-name", kindcluster.DefaultName, "kind: the cluster's name (reused if it exists)")
	f.StringVar(&k.work, "kind-workdir", "hubreplay-work", "kind: host directory the nodes mount (trace in, results out)")
	f.StringVar(&k.image, "kind-image", "hubreplay:dev", "kind: hubreplay's image in the nodes")
	f.StringVar(&k.src, "kind-build", "", "kind: build hubreplay's image from this source tree first and load it")
	f.StringVar(&k.values, "values", "", "kind: a z2jh values file for the proxy pod (proxy.chp resources, probes, flags)")
	f.IntVar(&k.shards, "shards", 2, "kind: replay pods sharing the trace")
	f.IntVar(&k.hostPort, "kind-host-port", 18000, "kind: host port the proxy's NodePort is mapped to")
	f.BoolVar(&k.keep, "keep", false, "kind: leave the namespaces (and a cluster made for this compare) in place")
}

// start brings up the cluster and returns the backend, and what tears down
// what this comparison made.
func (k *kindFlags) start(ctx context.Context, stderr io.Writer, tracePath string, play []string, settle, check time.Duration, memLimit int64) (_ compare.Backend, cleanup func(), err error) {
	values, err := kindcluster.LoadValues(k.values)
	if err != nil {
		return nil, nil, err
	}
	values = values.WithMemoryLimit(memLimit)
	abs, err := filepath.Abs(tracePath)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("trace: %w", err)
	}
	c := &kindcluster.Cluster{Name: k.name, WorkDir: k.work, HostPort: k.hostPort}
	fmt.Fprintf(stderr, "kind cluster %s: creating or reusing ...\n", c.Name)
	kc, created, err := c.Up()
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() {
		if created && !k.keep {
			fmt.Fprintf(stderr, "deleting kind cluster %s (made for this comparison; --keep keeps it)\n", c.Name)
			_ = c.Down()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if k.src != "" {
		repo, tag, _ := strings.Cut(k.image, ":")
		if _, err := kindcluster.BuildImage(ctx, k.src, repo, tag); err != nil {
			return nil, nil, err
		}
		if err := c.LoadImage(ctx, k.image); err != nil {
			return nil, nil, err
		}
	}
	cs, err := kindcluster.Client(kc)
	if err != nil {
		return nil, nil, err
	}
	return &kindcluster.Backend{Cluster: c, Client: cs, Stats: kindcluster.KubeletStats(cs), Image: k.image, Trace: abs,
		Play: play, Shards: k.shards, Values: values, CheckInterval: check, Settle: settle, Keep: k.keep,
		Say: func(format string, args ...any) { fmt.Fprintf(stderr, "  "+format+"\n", args...) },
		NewRecorder: func(w replay.RecordWriter, start time.Time) kindcluster.Recorder {
			return &compare.CandidateWriter{W: w, Start: start}
		}}, cleanup, nil
}

// startK8s connects to a cluster of the operators' own: the same staging
// as kind's, each candidate in a namespace of its own, with a volume claim
// for the trace and the results; nothing is created or deleted but those
// namespaces.
func (k *kindFlags) startK8s(stderr io.Writer, tracePath string, play []string, settle, check time.Duration, memLimit int64) (compare.Backend, error) {
	if k.k8sImage == "" {
		return nil, usageError{fmt.Errorf("--backend k8s needs --image REPO:TAG: hubreplay's image, pushed where the cluster pulls from (the README says how)")}
	}
	switch corev1.PersistentVolumeAccessMode(k.accessMode) {
	case corev1.ReadWriteMany, corev1.ReadWriteOnce, corev1.ReadWriteOncePod:
	default:
		return nil, usageError{fmt.Errorf("--access-mode %q: ReadWriteMany, ReadWriteOnce or ReadWriteOncePod", k.accessMode)}
	}
	values, err := kindcluster.LoadValues(k.values)
	if err != nil {
		return nil, err
	}
	values = values.WithMemoryLimit(memLimit)
	abs, err := filepath.Abs(tracePath)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	cs, rc, _, err := k8sClient(k.kubeconfig, k.context)
	if err != nil {
		return nil, usageError{err}
	}
	local, err := os.MkdirTemp("", "hubreplay-k8s-results-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "k8s cluster %s: candidates in namespaces hubreplay-a, -b, ... (hubreplay's image %s)\n", rc.Host, k.k8sImage)
	return &kindcluster.Backend{Client: cs, Name: "k8s", Stats: kindcluster.KubeletStats(cs), Image: k.k8sImage, Trace: abs,
		Work: &kindcluster.Claim{Client: cs, Exec: kindcluster.SPDYExec{Config: rc, Client: cs}, Image: k.k8sImage,
			StorageClass: k.storageClass, AccessMode: corev1.PersistentVolumeAccessMode(k.accessMode), LocalDir: local},
		Play: play, Shards: k.shards, Values: values, CheckInterval: check, Settle: settle, Keep: k.keep,
		Say: func(format string, args ...any) { fmt.Fprintf(stderr, "  "+format+"\n", args...) },
		NewRecorder: func(w replay.RecordWriter, start time.Time) kindcluster.Recorder {
			return &compare.CandidateWriter{W: w, Start: start}
		}}, nil
}
