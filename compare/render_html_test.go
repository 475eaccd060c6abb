package compare_test

import (
	"context"
	"image"
	"image/color"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/compare"
)

// chromium finds a headless Chromium (Debian: chromium-headless-shell or
// chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no headless Chromium on PATH (.ci/run installs the Debian package chromium-headless-shell)")
	return ""
}

// checkHTMLRenders opens the HTML report in headless Chromium, without
// network, and looks at the screenshot: A's and B's plot lines must be
// there, in their colours.
func checkHTMLRenders(t *testing.T, rep *compare.Report) {
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	require.NoError(t, err)
	require.NoError(t, rep.WriteHTML(f))
	require.NoError(t, f.Close())
	body, err := os.ReadFile(page)
	require.NoError(t, err)
	assert.NotRegexp(t, `(src|href)\s*=\s*["']?(https?:)?//`, string(body), "self-contained: nothing fetched from elsewhere")
	assert.NotContains(t, string(body), "<script", "no script needed to see it")

	bin := chromium(t)
	shot := filepath.Join(dir, "report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--window-size=1100,1700", "--screenshot="+shot, "file://"+page).CombinedOutput()
	require.NoError(t, err, "%s", out)
	pf, err := os.Open(shot)
	require.NoError(t, err)
	defer pf.Close()
	img, _, err := image.Decode(pf)
	require.NoError(t, err)
	a := countNear(img, color.RGBA{0x1f, 0x77, 0xb4, 0xff})
	b := countNear(img, color.RGBA{0xff, 0x7f, 0x0e, 0xff})
	t.Logf("screenshot %s: %d pixels in A's colour, %d in B's", shot, a, b)
	// Five plots of lines 2.5 px wide across ~850 px make thousands of
	// pixels; the legends and the swatch alone, about 500.
	assert.Greater(t, a, 1500, "A's plot lines are visible (B's, drawn after, cover them where they meet)")
	assert.Greater(t, b, 1500, "B's plot lines are visible")
}

func countNear(img image.Image, c color.RGBA) int {
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if near(r>>8, c.R) && near(g>>8, c.G) && near(b>>8, c.B) {
				n++
			}
		}
	}
	return n
}

func near(v uint32, want uint8) bool { return int(v)-int(want) < 24 && int(want)-int(v) < 24 }
