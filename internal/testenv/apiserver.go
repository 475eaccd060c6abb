package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// APIServerVersion is the Kubernetes release scripts/apiserver builds.
const APIServerVersion = "v1.37.2"

// APIServer is a real kube-apiserver (with its etcd) on loopback: no
// scheduler, controllers or kubelets, so objects are validated and
// admitted (PodSecurity, ServiceAccount, ...) and stored, and nothing runs.
type APIServer struct {
	URL   string // https://127.0.0.1:PORT, a self-signed certificate
	Token string // a member of system:masters
}

// StartAPIServer starts etcd and kube-apiserver from scripts/apiserver's
// build in the test cache, for the length of the test. Without them the
// test skips, saying how to build them; where they must be there
// (HUBREPLAY_TEST_REQUIRE lists "apiserver"; .ci/run builds them), it fails.
func StartAPIServer(t testing.TB) *APIServer {
	t.Helper()
	dir := filepath.Join(CacheRoot(), "apiserver-"+APIServerVersion)
	apiserver, etcd := filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "etcd")
	for _, bin := range []string{apiserver, etcd} {
		if _, err := os.Stat(bin); err != nil {
			why := fmt.Sprintf("no %s: scripts/apiserver builds kube-apiserver and etcd from the Go module proxy (about 8 minutes, once)", bin)
			if required("apiserver") {
				t.Fatalf("%s, and HUBREPLAY_TEST_REQUIRE says it must be there", why)
			}
			t.Skip(why)
		}
	}
	work := t.TempDir()
	client, peer := FreePort(t), FreePort(t)
	clientURL, peerURL := fmt.Sprintf("http://127.0.0.1:%d", client), fmt.Sprintf("http://127.0.0.1:%d", peer)
	Start(t, etcd, nil, "--name", "default", "--data-dir", filepath.Join(work, "etcd"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default="+peerURL,
		"--log-level", "warn")
	WaitListening(t, fmt.Sprintf("127.0.0.1:%d", client), 30*time.Second)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(work, "sa.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	tokens := filepath.Join(work, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	Start(t, apiserver, nil, "--etcd-servers", clientURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(port), "--cert-dir", filepath.Join(work, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", keyFile, "--service-account-signing-key-file", keyFile,
		"--service-cluster-ip-range", "10.96.0.0/16", "--token-auth-file", tokens, "--authorization-mode", "RBAC",
		// The kubernetes Service's endpoints: a loopback address is refused there.
		"--endpoint-reconciler-type", "none")
	s := &APIServer{URL: fmt.Sprintf("https://127.0.0.1:%d", port), Token: token}
	// Ready when /readyz says so (etcd reached, the bootstrap done).
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequest("GET", s.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver on %s not ready after 90 s: %v", s.URL, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
