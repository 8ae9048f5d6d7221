package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// monoNow is CLOCK_MONOTONIC in ns: the clock of the kernel's process events.
func monoNow() int64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// procEvent is the exec or exit of a process whose argv[0] carries the run's tag.
type procEvent struct {
	exit bool
	pid  int
	tag  string
	ts   int64 // CLOCK_MONOTONIC ns
}

// watcher reports the exec and exit of every tagged process. With the
// kernel's process-events connector (netlink, root) the instants are the
// kernel's own; without it, /proc is polled every pollInterval.
type watcher struct {
	prefix []byte
	method string // "proc connector" or "poll /proc every 1ms"

	mu   sync.Mutex
	subs map[chan procEvent]struct{}
	live map[int]string // tagged pids seen alive, for their exits
	lost int            // ENOBUFS: the kernel dropped events

	f    *os.File // netlink socket; nil when polling
	stop chan struct{}
	done chan struct{}
}

const pollInterval = time.Millisecond

// Process-events connector constants (linux/cn_proc.h, linux/connector.h).
const (
	cnIdxProc       = 1
	cnValProc       = 1
	procMcastListen = 1
	procEventExec   = 0x00000002
	procEventExit   = 0x80000000
	soRcvbufForce   = 33
	nlmsgDone       = 3
)

func newWatcher(prefix string, forcePoll bool) *watcher {
	w := &watcher{prefix: []byte(prefix), subs: make(map[chan procEvent]struct{}), live: make(map[int]string),
		stop: make(chan struct{}), done: make(chan struct{})}
	if !forcePoll {
		f, err := openConnector()
		if err == nil {
			w.f, w.method = f, "proc connector"
			go w.readConnector()
			return w
		}
		logf("process-events connector unavailable (%v); polling /proc every %v", err, pollInterval)
	}
	w.method = "poll /proc every " + pollInterval.String()
	go w.poll()
	return w
}

func openConnector() (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, syscall.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soRcvbufForce, 32<<20) != nil {
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<20)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK, Groups: cnIdxProc, Pid: 0}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	msg := make([]byte, 16+20+4)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], nlmsgDone)
	ne.PutUint32(msg[16:], cnIdxProc)
	ne.PutUint32(msg[20:], cnValProc)
	ne.PutUint16(msg[32:], 4)
	ne.PutUint32(msg[36:], procMcastListen)
	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return os.NewFile(uintptr(fd), "proc-connector"), nil
}

func (w *watcher) readConnector() {
	defer close(w.done)
	rc, err := w.f.SyscallConn()
	if err != nil {
		logf("proc connector: %v", err)
		return
	}
	buf := make([]byte, 64<<10)
	ne := binary.NativeEndian
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, 0)
			return rerr != syscall.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if rerr == syscall.ENOBUFS {
			w.mu.Lock()
			w.lost++
			w.mu.Unlock()
			continue
		}
		if rerr != nil {
			logf("proc connector: %v", rerr)
			return
		}
		for off := 0; off+16 <= n; {
			l := int(ne.Uint32(buf[off:]))
			if l < 16 || off+l > n {
				break
			}
			base := off + 16 + 20
			if base+24 <= off+l {
				what := ne.Uint32(buf[base:])
				ts := int64(ne.Uint64(buf[base+8:]))
				pid := int(int32(ne.Uint32(buf[base+16:])))
				tgid := int(int32(ne.Uint32(buf[base+20:])))
				if pid == tgid {
					switch what {
					case procEventExec:
						if a := argv0(pid); bytes.HasPrefix(a, w.prefix) {
							w.emit(procEvent{pid: pid, tag: string(a), ts: ts})
						}
					case procEventExit:
						w.emit(procEvent{exit: true, pid: pid, ts: ts})
					}
				}
			}
			off += (l + 3) &^ 3
		}
	}
}

// poll is the fallback: it diffs the set of tagged processes every pollInterval.
func (w *watcher) poll() {
	defer close(w.done)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	prev := map[int]string{}
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		now := monoNow()
		cur := scanTagged(string(w.prefix))
		for pid, p := range cur {
			if prev[pid] != p.tag {
				w.emit(procEvent{pid: pid, tag: p.tag, ts: now})
			}
		}
		for pid := range prev {
			if _, ok := cur[pid]; !ok {
				w.emit(procEvent{exit: true, pid: pid, ts: now})
			}
		}
		prev = make(map[int]string, len(cur))
		for pid, p := range cur {
			prev[pid] = p.tag
		}
	}
}

// emit hands a tagged event to every subscriber. An exit is tagged when its
// pid was seen exec'ing with a tag; events of other processes are dropped.
func (w *watcher) emit(e procEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.exit {
		tag, ok := w.live[e.pid]
		if !ok {
			return
		}
		delete(w.live, e.pid)
		e.tag = tag
	} else {
		w.live[e.pid] = e.tag
	}
	for c := range w.subs {
		select {
		case c <- e:
		default:
			w.lost++ // a subscriber that does not keep up; counted like a kernel drop
		}
	}
}

// seed records tagged processes alive now, so that their exits are reported.
func (w *watcher) seed() {
	cur := scanTagged(string(w.prefix))
	w.mu.Lock()
	for pid, p := range cur {
		w.live[pid] = p.tag
	}
	w.mu.Unlock()
}

func (w *watcher) subscribe() chan procEvent {
	c := make(chan procEvent, 1<<16)
	w.mu.Lock()
	w.subs[c] = struct{}{}
	w.mu.Unlock()
	return c
}

func (w *watcher) unsubscribe(c chan procEvent) {
	w.mu.Lock()
	delete(w.subs, c)
	w.mu.Unlock()
}

func (w *watcher) lostEvents() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

func (w *watcher) close() {
	close(w.stop)
	if w.f != nil {
		w.f.Close()
	}
	<-w.done
}

var errTimeout = errors.New("timed out")

// next returns the next event on c, or errTimeout at the deadline (mono ns).
func next(c chan procEvent, deadline int64) (procEvent, error) {
	d := time.Duration(deadline - monoNow())
	if d <= 0 {
		select {
		case e := <-c:
			return e, nil
		default:
			return procEvent{}, errTimeout
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case e := <-c:
		return e, nil
	case <-t.C:
		return procEvent{}, errTimeout
	}
}
