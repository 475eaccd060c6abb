package trace

// AppendReflect is AppendJSON by encoding/json alone, for the tests that
// hold the hand-written encoders to it.
var AppendReflect = appendReflect
