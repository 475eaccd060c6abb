// Package version tells which hubreplay build is running, for `hubreplay
// version` and for the tool field of every trace header.
package version

import (
	"runtime/debug"
	"sync"
)

// Version is set at link time by the Makefile (-X); otherwise it comes from
// the module's build info, and "devel" when that has none.
var Version = ""

var once = sync.OnceValue(func() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
})

// String returns the running hubreplay version.
func String() string { return once() }

// Tool is the value trace headers carry in their tool field.
func Tool() string { return "hubreplay " + String() }
