//go:build !tapimage

package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// newWorkdirCmd is what the k8s backend runs in its workspace pod (by
// exec, as kubectl cp would, but hubreplay's image has no shell or tar):
// hold the volume, put the trace in, make the results directory, get the
// results out.
func newWorkdirCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "workdir (hold | put FILE | mkdir DIR | get DIR)",
		Short:  "The k8s backend's workspace pod: hold the volume, copy files in and out",
		Hidden: true,
	}
	cmd.AddCommand(&cobra.Command{
		Use: "hold", Short: "wait until stopped", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { <-cmd.Context().Done(); return nil },
	}, &cobra.Command{
		Use: "put FILE", Short: "write standard input to FILE", Args: exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error { return putFile(cmd.InOrStdin(), args[0]) },
	}, &cobra.Command{
		Use: "mkdir DIR", Short: "make DIR empty, writable by the shards", Args: exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.RemoveAll(args[0]); err != nil {
				return err
			}
			if err := os.MkdirAll(args[0], 0o777); err != nil {
				return err
			}
			return os.Chmod(args[0], 0o777) // the shards write as an unprivileged user
		},
	}, &cobra.Command{
		Use: "get DIR", Short: "write DIR's files to standard output as a tar stream", Args: exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error { return tarDir(args[0], cmd.OutOrStdout()) },
	})
	return cmd
}

// putFile writes r to path whole or not at all.
func putFile(r io.Reader, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// tarDir writes the regular files under dir, named relative to it.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("get %s: %w", dir, err)
	}
	return tw.Close()
}
