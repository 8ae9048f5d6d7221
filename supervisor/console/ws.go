package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/opsvc/opsvc/supervisor/bus"
)

// Limits of a WebSocket client.
const (
	wsReadLimit    = 4 << 10 // the client sends nothing but control frames
	wsWriteTimeout = 10 * time.Second
	wsPingInterval = 30 * time.Second
)

// feed serves GET /v1/events/ws (and /api/events/ws): a WebSocket that sends
// each event as one JSON text message.
//
//	?since=SEQ  the stored events after SEQ first; without it, from now on
//	?unit=NAME  only that unit's events
//	?type=T     only those types (repeated or comma-separated; "unit.*")
//	?compat=operator  also each event a worker published, in the shape of
//	            the original operator: {"type":"event","event":{…}}
//
// A client that falls behind gets a bus.lagged event (its data.dropped_after
// is the since to reconnect with), then the connection is closed; so is one
// that does not take a message within ten seconds, or that sends a data
// message. The connection ends with status 1001 when the daemon stops.
type feed struct {
	events Events
	logf   func(string, ...any)
	ctx    context.Context // ends on close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // open feeds
}

func newFeed(events Events, logf func(string, ...any)) *feed {
	ctx, cancel := context.WithCancel(context.Background())
	return &feed{events: events, logf: logf, ctx: ctx, cancel: cancel}
}

func (f *feed) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}

func (f *feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		writeErr(w, http.StatusServiceUnavailable, "events: the daemon is stopping", "retry once it is back")
		return
	}
	f.wg.Add(1)
	f.mu.Unlock()
	defer f.wg.Done()
	q := r.URL.Query()
	var since uint64
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("events: bad since %q: not an event seq", s),
				"give the seq of the last event you have, a non-negative integer (0 = from the oldest kept)")
			return
		}
		since = n
	} else {
		since = f.events.LastSeq()
	}
	compat := false
	switch c := q.Get("compat"); c {
	case "":
	case "operator":
		compat = true
	default:
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("events: unknown compat %q", c), "use compat=operator, or leave it out")
		return
	}
	filter := bus.Filter{Unit: q.Get("unit")}
	for _, t := range q["type"] {
		for p := range strings.SplitSeq(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				filter.Types = append(filter.Types, p)
			}
		}
	}
	// Subscribed before the handshake completes: a client that fetches a
	// snapshot once the socket is open misses nothing published after.
	sub, err := f.events.Subscribe(since, filter, true)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error(), "the daemon is shutting down; retry once it is back")
		return
	}
	defer sub.Close()
	// The origin must be the host the request was sent to (the default).
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept has answered
	}
	conn.SetReadLimit(wsReadLimit)
	// The client sends nothing but control frames: one reader answers them
	// and notices the end of the connection. (Not conn.CloseRead: its own
	// close after a data message waits for itself.)
	var gotData bool
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _, err := conn.Read(context.Background())
		gotData = err == nil
	}()
	defer func() {
		conn.CloseNow()
		<-readDone
	}()
	ctx := r.Context()
	ping := time.NewTicker(wsPingInterval)
	defer ping.Stop()
	for {
		select {
		case <-readDone:
			if gotData {
				conn.Close(websocket.StatusPolicyViolation, "the feed takes no messages")
			}
			return
		case <-ctx.Done():
			return
		case <-f.ctx.Done():
			conn.Close(websocket.StatusGoingAway, "the daemon is stopping")
			return
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		case e, ok := <-sub.C():
			if !ok {
				conn.Close(websocket.StatusGoingAway, "the daemon is stopping")
				return
			}
			if err := f.send(ctx, conn, e); err != nil {
				return
			}
			if compat {
				if msg, ok := operatorMessage(e); ok {
					if err := f.send(ctx, conn, msg); err != nil {
						return
					}
				}
			}
			if e.Type == bus.TypeLagged {
				conn.Close(websocket.StatusTryAgainLater, "fell behind: reconnect with since=data.dropped_after")
				return
			}
		}
	}
}

func (f *feed) send(ctx context.Context, conn *websocket.Conn, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		if f.logf != nil {
			f.logf("console: events: encode: %v", err)
		}
		return nil // skip it, as the NDJSON stream does
	}
	ctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
	defer cancel()
	err = conn.Write(ctx, websocket.MessageText, data)
	if errors.Is(err, context.DeadlineExceeded) {
		conn.Close(websocket.StatusPolicyViolation, "too slow")
	}
	return err
}

// OperatorEvent is the original operator's message for an event a worker
// published.
type OperatorEvent struct {
	Type  string           `json:"type"` // "event"
	Event OperatorEventRef `json:"event"`
}

// OperatorEventRef is the worker's event inside an OperatorEvent.
type OperatorEventRef struct {
	Name string    `json:"name"` // what the worker called it: "chain.created", "progress", …
	Unit string    `json:"unit"`
	Data any       `json:"data,omitempty"`
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
}

// operatorMessage returns the operator's shape of e if a worker published
// it: worker.NAME events (data {name, data}), and the chain.* and session.*
// events of an orchestrator (data is the worker's). session.lease is the
// daemon's own.
func operatorMessage(e bus.Event) (OperatorEvent, bool) {
	ref := OperatorEventRef{Unit: e.Unit, Seq: e.Seq, Time: e.Time}
	switch {
	case strings.HasPrefix(e.Type, "worker."):
		ref.Name, _ = e.Data["name"].(string)
		if ref.Name == "" {
			ref.Name = strings.TrimPrefix(e.Type, "worker.")
		}
		ref.Data = e.Data["data"]
	case e.Type == "session.lease":
		return OperatorEvent{}, false
	case strings.HasPrefix(e.Type, "chain.") || strings.HasPrefix(e.Type, "session."):
		ref.Name = e.Type
		if len(e.Data) > 0 {
			ref.Data = e.Data
		}
	default:
		return OperatorEvent{}, false
	}
	return OperatorEvent{Type: "event", Event: ref}, true
}
