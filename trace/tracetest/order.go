package tracetest

import (
	"fmt"

	"github.com/hubreplay/hubreplay/trace"
)

// OrderRule checks FORMAT.md's rule for writers: a connection's conn_open
// comes before, and its conn_close after, every other record of that
// connection. It returns the first violation, naming the record by its
// index in recs.
func OrderRule(recs []trace.Record) error {
	const (
		open   = 1
		closed = 2
	)
	state := map[trace.ConnID]int{}
	for i, r := range recs {
		id, ok := trace.Conn(r)
		if !ok {
			continue
		}
		switch r.(type) {
		case *trace.ConnOpen:
			if state[id] != 0 {
				return fmt.Errorf("record %d: conn %d opened twice", i, id)
			}
			state[id] = open
		case *trace.ConnClose:
			if state[id] != open {
				return fmt.Errorf("record %d: conn %d closed when not open", i, id)
			}
			state[id] = closed
		default:
			if state[id] != open {
				return fmt.Errorf("record %d (%s) of conn %d outside its open and close", i, r.Type(), id)
			}
		}
	}
	return nil
}
