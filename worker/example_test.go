package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/opsvc/opsvc/worker"
)

// A Go worker for a unit of type "ipc": it says when it is ready, answers the commands of
// `opsvc send UNIT NAME [JSON]`, and returns when the daemon asks it to stop. Heartbeats go out by
// themselves when the unit has a watchdog.
func Example() {
	conn, err := worker.Connect()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	cmds := conn.Commands() // before Ready: the worker takes commands
	conn.Ready()
	for {
		select {
		case cmd := <-cmds:
			cmd.Reply(map[string]string{"done": cmd.Name}, nil)
		case <-conn.Shutdown():
			return // finish the work at hand first
		}
	}
}

// Started outside opsvc, a worker gets a connection that does nothing, and says so once.
func ExampleConnectWith() {
	conn, err := worker.ConnectWith(worker.Options{Stderr: os.Stdout})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println("supervised:", conn.Supervised())
	fmt.Println("ready:", conn.Ready(), "status:", conn.Status("idle"))
	_, err = conn.Request(context.Background(), "session.acquire", nil)
	fmt.Println("request:", errors.Is(err, worker.ErrNotSupervised))
	// Output:
	// opsvc worker: not started by opsvc (OPSVC_IPC_FD unset); running without a supervisor
	// supervised: false
	// ready: <nil> status: <nil>
	// request: true
}

// Both ends of a channel in one process: the daemon's (NewChannel) and a worker's (NewConn; a
// real worker gets its end as fd 3 and calls Connect).
func ExampleNewChannel() {
	ch, child, err := worker.NewChannel()
	if err != nil {
		log.Fatal(err)
	}
	defer ch.Close()
	conn, err := worker.NewConn(child, worker.Options{OnEOF: func() {}})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	done := make(chan struct{})
	go func() { // the worker
		defer close(done)
		cmds := conn.Commands()
		conn.Ready()
		for {
			select {
			case cmd := <-cmds:
				cmd.Reply(map[string]json.RawMessage{"pong": cmd.Args}, nil)
			case d := <-conn.Shutdown():
				conn.Status(fmt.Sprintf("stopping within %v", d))
				return
			}
		}
	}()

	m := <-ch.Messages()
	fmt.Println(m.Type)
	reply, err := ch.Command(context.Background(), "ping", json.RawMessage(`[1,2]`))
	fmt.Println(string(reply), err)
	ch.Send(worker.Message{Type: worker.TypeShutdown, DeadlineMS: 5000})
	m = <-ch.Messages()
	fmt.Println(m.Type+":", m.Text)
	<-done
	// Output:
	// ready
	// {"pong":[1,2]} <nil>
	// status: stopping within 5s
}

// The daemon answers a worker's request from a goroutine of its own (Channel.Go), so that a slow
// answer holds nothing up; a failed answer carries a code saying whether asking again may help.
func ExampleChannel_Go() {
	ch, child, err := worker.NewChannel()
	if err != nil {
		log.Fatal(err)
	}
	defer ch.Close()
	conn, err := worker.NewConn(child, worker.Options{OnEOF: func() {}})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	go func() { // the daemon
		for m := range ch.Messages() {
			if m.Type != worker.TypeRequest {
				continue
			}
			ch.Go(m.ID, func() (any, error) {
				if m.Method == "store" {
					return nil, worker.WithCode(worker.CodeUnavailable, errors.New("disk full"))
				}
				return map[string]string{"method": m.Method}, nil
			})
		}
	}()

	data, err := conn.Request(context.Background(), "hello", nil)
	fmt.Println(string(data), err)
	_, err = conn.Request(context.Background(), "store", map[string]int{"n": 1})
	fmt.Println(err)
	fmt.Println("ask again later:", worker.Unavailable(err))
	// Output:
	// {"method":"hello"} <nil>
	// worker: request "store" failed: disk full
	// ask again later: true
}
