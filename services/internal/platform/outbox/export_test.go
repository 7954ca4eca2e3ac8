package outbox

// SetBeforeMark installs a hook that runs after a batch was acknowledged and before it is
// marked published, so tests can simulate a relay that dies between the two.
func SetBeforeMark(r *Relay, hook func() error) { r.beforeMark = hook }
