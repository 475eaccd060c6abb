package capture

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/capture/anonymize"
	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/trace"
)

// routeAPI calls CHP's REST API as JupyterHub does.
func routeAPI(t *testing.T, apiPort int, token, method, path, body string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/api/routes%s", apiPort, path), bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "token "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, want, resp.StatusCode, "%s /api/routes%s", method, path)
}

// TestCaptureThroughRealCHP records the client side of real
// configurable-http-proxy releases, with the hub adding and deleting the
// user's route through the REST API, as a z2jh proxy pod sees it.
func TestCaptureThroughRealCHP(t *testing.T) {
	for _, version := range []string{"4.5.6", "5.3.0"} {
		t.Run(version, func(t *testing.T) {
			bin := testenv.CHP(t, version)
			backend, _ := testenv.Serve(t)
			public, api := testenv.FreePort(t), testenv.FreePort(t)
			secret := make([]byte, 16)
			_, _ = rand.Read(secret)
			token := hex.EncodeToString(secret)
			testenv.Start(t, "node", []string{"CONFIGPROXY_AUTH_TOKEN=" + token}, bin,
				"--ip", "127.0.0.1", "--port", strconv.Itoa(public), "--api-ip", "127.0.0.1", "--api-port", strconv.Itoa(api),
				"--default-target", "http://"+backend, "--log-level", "warn")
			testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", api), 20*time.Second)
			testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", public), 20*time.Second)

			dir := t.TempDir()
			dump := testenv.Tcpdump(t, filepath.Join(dir, "chp.pcap"), fmt.Sprintf("tcp port %d or tcp port %d", public, api))
			userPath := "/user/" + testenv.User
			routeAPI(t, api, token, "POST", userPath, fmt.Sprintf(`{"target":"http://%s","user":%q,"server_name":""}`, backend, testenv.User), http.StatusCreated)
			routeAPI(t, api, token, "GET", "", "", http.StatusOK)
			w := testenv.Drive(t, fmt.Sprintf("127.0.0.1:%d", public), false)
			routeAPI(t, api, token, "DELETE", userPath, "", http.StatusNoContent)
			dump.Stop(t)

			o := Options{Ports: []uint16{uint16(public)}, APIPorts: []uint16{uint16(api)}}
			start, recs, c := captureFile(t, dump.Path, o)
			assert.Zero(t, c.Gaps)
			checkWorkload(t, w, start, recs)
			routes := ofType[*trace.Route](recs)
			require.Len(t, routes, 2, "the add and the delete; the GET changes nothing")
			assert.Equal(t, trace.RouteAdd, routes[0].Op)
			assert.Equal(t, userPath, routes[0].Path)
			assert.Equal(t, "http://"+backend, routes[0].Target)
			assert.Equal(t, testenv.User, routes[0].User)
			assert.Equal(t, trace.RouteDelete, routes[1].Op)
			assert.Less(t, routes[0].TS, ofType[*trace.HTTP](recs)[0].TS, "the route came before the traffic")

			// Anonymized, neither the users' secrets nor the proxy's token remain.
			anon, err := anonymize.New(anonymize.RandomKey(), anonymize.DefaultRules())
			require.NoError(t, err)
			o.Scrub = anon
			_, recs, _ = captureFile(t, dump.Path, o)
			v := anonymize.NewVerifier(append([]string{token, backend}, testenv.WireSecrets...))
			for _, r := range recs {
				v.Check(r)
			}
			for _, f := range v.Findings {
				t.Errorf("leak: %s", f)
			}
			routes = ofType[*trace.Route](recs)
			require.Len(t, routes, 2)
			assert.Equal(t, "/user/"+anon.User(testenv.User), routes[0].Path)
			assert.Equal(t, anon.User(testenv.User), ofType[*trace.HTTP](recs)[1].User)
		})
	}
}
