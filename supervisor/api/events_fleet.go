package api

// TypeAPIMove is the type of APIMove.
const TypeAPIMove = "api.move"

// APIMove: a client asked to move a fleet unit to another host (opsvc move).
type APIMove struct {
	To string `json:"to"` // the host
	Caller
}

// EventType is api.move.
func (APIMove) EventType() string { return TypeAPIMove }
