package api

// Event types about processes a unit started that outlived their place.
const (
	TypeUnitEscaped     = "unit.escaped"
	TypeDaemonLeftovers = "daemon.leftovers"
)

// UnitEscaped: processes of the unit were found outside its process group
// (they called setsid or setpgid); they got the same signals as the group
// and end with the unit.
type UnitEscaped struct {
	PIDs    []int  `json:"pids"`     // at most 64 are listed
	Count   int    `json:"count"`    // how many were found
	FoundBy string `json:"found_by"` // "cgroup" or "environment"
	Reason  string `json:"reason"`
}

// DaemonLeftovers: a daemon on this state directory died without stopping
// the unit; what it had left running was ended before any unit started.
type DaemonLeftovers struct {
	PIDs   []int  `json:"pids"`  // at most 64 are listed
	Count  int    `json:"count"` // how many were ended
	Reason string `json:"reason"`
}

func (UnitEscaped) EventType() string     { return TypeUnitEscaped }
func (DaemonLeftovers) EventType() string { return TypeDaemonLeftovers }
