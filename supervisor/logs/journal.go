package logs

// Priorities (syslog levels) of the lines sent to journald.
const (
	PriorityErr  = 3
	PriorityInfo = 6
)

// ValidFieldName reports whether journald accepts name as a field a client may send: 1 to 64
// characters of A-Z, 0-9 and "_", not starting with a digit or "_" (those are journald's own).
func ValidFieldName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// journalSendBuffer is the SO_SNDBUF asked for on the journald socket: a datagram can be about
// that large before the entry has to go through a memfd (the kernel caps it at wmem_max).
const journalSendBuffer = 8 << 20
