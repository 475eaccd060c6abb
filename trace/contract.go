package trace

// Headers of the replay ↔ fixtures contract (FORMAT.md, "Record numbers"):
// replay tags every request with its record's number, and the fixture that
// answers echoes the number and says which server it is, so that replay can
// tell an answer from the trace apart from one the proxy made up (its own
// 503) or one that reached the hub because the proxy lost a route.
const (
	RecordHeader = "X-Hubreplay-Record"
	ServerHeader = "X-Hubreplay-Server" // "hub" or "user"
)
