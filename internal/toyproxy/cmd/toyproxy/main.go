// Command toyproxy runs internal/toyproxy: a CHP-compatible proxy with
// faults to order, for tests.
package main

import (
	"os"

	"github.com/hubreplay/hubreplay/internal/toyproxy"
)

func main() { os.Exit(toyproxy.Main(os.Args[1:])) }
