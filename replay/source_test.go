package replay_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
)

// Against a proxy on loopback each user's connections come from an
// address of the user's own, as real users' do: a fast replay through a
// proxy that closes every connection then does not pile its TIME_WAIT
// sockets onto one pair of addresses.
func TestEachUserDialsFromItsOwnAddress(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux routes all of 127.0.0.0/8 to loopback")
	}
	var mu sync.Mutex
	from := map[string]map[string]bool{} // user → client addresses
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		user, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/user/"), "/")
		mu.Lock()
		if from[user] == nil {
			from[user] = map[string]bool{}
		}
		from[user][host] = true
		mu.Unlock()
		w.Header().Set("Connection", "close") // a new connection for every request, as CHP 4.5.x
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	h, recs := session()
	path := writeTrace(t, h, recs)
	p := plan(t, path, replay.Options{Speed: 4, Users: 3})
	run := &replay.Runner{Target: srv.URL, Results: &memResults{}, Timeout: 5 * time.Second}
	_, err := run.Run(context.Background(), p)
	require.NoError(t, err)

	require.Len(t, from, 3, "three users: %v", from)
	seen := map[string]string{}
	for user, addrs := range from {
		require.Len(t, addrs, 1, "all of %s's connections from one address: %v", user, addrs)
		for a := range addrs {
			ip := net.ParseIP(a)
			assert.True(t, ip.IsLoopback(), a)
			assert.NotEqual(t, "127.0.0.1", a, "not the machine's usual one")
			assert.Empty(t, seen[a], "%s shares %s with %s", user, a, seen[a])
			seen[a] = user
		}
	}
}
