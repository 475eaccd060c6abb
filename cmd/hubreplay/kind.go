//go:build !tapimage

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/kindcluster"
)

func newKindCmd() *cobra.Command {
	var (
		name, work, src, image string
		hostPort, workers      int
	)
	cmd := &cobra.Command{
		Use:   "kind",
		Short: "A kind cluster for staging: create or reuse it, look at it, delete it",
		Long: `kind manages the cluster the kind backend stages candidates in, through kind's
library (a Docker engine is needed; the docker client alone is not enough).
Every node mounts --workdir at /hubreplay (traces in, results out), and the
proxy's NodePort (30080) is mapped to --host-port on the host's loopback, so
that the replay reaches the proxy without an API-server port-forward.`,
		Example: `  hubreplay kind up --workdir ./staging
  hubreplay kind image --src .          # build hubreplay's image and load it into the nodes
  hubreplay kind status
  hubreplay kind down`,
	}
	cluster := func() *kindcluster.Cluster {
		return &kindcluster.Cluster{Name: name, WorkDir: work, HostPort: hostPort, Workers: workers}
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Create the cluster, or reuse it if it exists; print its kubeconfig's path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := cluster()
			fmt.Fprintf(cmd.ErrOrStderr(), "kind cluster %s: creating or reusing (creating takes a few minutes) ...\n", c.Name)
			kc, created, err := c.Up()
			if err != nil {
				return err
			}
			path := filepath.Join(work, "kubeconfig")
			if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
				return fmt.Errorf("write kubeconfig: %w", err)
			}
			what := "reused"
			if created {
				what = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kind cluster %s %s; kubeconfig: %s\n", c.Name, what, path)
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Say whether the cluster exists, and its nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ok, nodes, err := cluster().Status()
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintf(cmd.OutOrStdout(), "kind cluster %s: none ('hubreplay kind up' makes it)\n", name)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kind cluster %s: nodes %s\n", name, strings.Join(nodes, ", "))
			return nil
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Delete the cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cluster().Down(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kind cluster %s deleted\n", name)
			return nil
		},
	}
	img := &cobra.Command{
		Use:   "image",
		Short: "Build hubreplay's image from a source tree and load it into the cluster's nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, tag, ok := strings.Cut(image, ":")
			if !ok {
				return usageError{fmt.Errorf("--tag %q: give REPO:TAG", image)}
			}
			built, err := kindcluster.BuildImage(cmd.Context(), src, repo, tag)
			if err != nil {
				return err
			}
			if err := cluster().LoadImage(cmd.Context(), built); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s built and loaded into kind cluster %s\n", built, name)
			return nil
		},
	}
	img.Flags().StringVar(&src, "src", ".", "hubreplay's source tree (with its Dockerfile)")
	img.Flags().StringVar(&image, "tag", "hubreplay:dev", "the image's REPO:TAG")
	pf := cmd.PersistentFlags()
	pf.StringVar(&name, "name", kindcluster.DefaultName, "the cluster's name")
	up.Flags().StringVar(&work, "workdir", "hubreplay-work", "host directory every node mounts at /hubreplay")
	up.Flags().IntVar(&hostPort, "host-port", 18000, "host port (on 127.0.0.1) the proxy's NodePort is mapped to")
	up.Flags().IntVar(&workers, "workers", 0, "worker nodes beside the control plane")
	cmd.AddCommand(up, status, down, img)
	return cmd
}
