//go:build !tapimage

package main

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// k8sClient loads a kubeconfig as kubectl does (KUBECONFIG or
// ~/.kube/config unless a file is given; the current context unless one is
// named), for tap and compare --backend k8s, and returns the context's
// namespace too.
func k8sClient(kubeconfig, context string) (kubernetes.Interface, *rest.Config, string, error) {
	if k8sTestClient != nil {
		return k8sTestClient()
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	ns, _, err := cfg.Namespace()
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	rc, err := cfg.ClientConfig()
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	return cs, rc, ns, nil
}

// k8sTestClient stands in for the kubeconfig in tests.
var k8sTestClient func() (kubernetes.Interface, *rest.Config, string, error)
