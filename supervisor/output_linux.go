package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opsvc/opsvc/supervisor/handover"
	"github.com/opsvc/opsvc/supervisor/logs"
	"golang.org/x/sys/unix"
)

// maxLine is the longest output line kept; a longer one keeps its first
// bytes and ends with a marker saying how many were cut.
const maxLine = logs.MaxLineBytes

// readQuantum is the most one pipe is read per turn: every ready pipe gets
// a turn before any gets a second one, so a unit printing without pause
// delays the others' lines by at most one quantum each.
const readQuantum = 64 << 10

// outputPoller reads every worker's stdout and stderr pipes from one
// goroutine with epoll, so a worker costs no goroutine and no buffer of its
// own; only a line that spans reads is held, at most maxLine of it. Pipes are
// read in turns (level-triggered: a pipe with more to read is reported again
// in the next round), so one unit's flood cannot starve the others. A worker
// never blocks on its pipe as long as the writer it feeds (the log ring and
// queue) does not.
type outputPoller struct {
	epfd int
	efd  int // eventfd: wakes the loop to stop

	mu     sync.Mutex
	pipes  map[int]*outPipe
	done   chan struct{}
	paused bool // pause: the loop stopped without closing the pipes
}

// outPipe is the read end of one output pipe.
type outPipe struct {
	fd      int
	owner   *os.File // holds fd when handed over: closing it closes fd
	w       io.Writer
	pending []byte
	cut     int // bytes of the current line past maxLine, not kept
}

func newOutputPoller() (*outputPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("supervisor: epoll: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("supervisor: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, err
	}
	o := &outputPoller{epfd: epfd, efd: efd, pipes: make(map[int]*outPipe), done: make(chan struct{})}
	go o.loop()
	return o, nil
}

// pipe makes a pipe whose write end goes to a worker; the read end is
// polled and its lines written to w (discarded when w is nil).
func (o *outputPoller) pipe(w io.Writer) (readEnd *outPipe, writeEnd int, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, -1, fmt.Errorf("supervisor: pipe: %w", err)
	}
	p, err := o.add(fds[0], nil, w, handover.Pending{})
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, err
	}
	return p, fds[1], nil
}

// add polls the read end fd, which it takes over, writing its lines to w,
// the first one begun with pend. owner, if not nil, is the file that holds
// fd: it is closed instead of fd.
func (o *outputPoller) add(fd int, owner *os.File, w io.Writer, pend handover.Pending) (*outPipe, error) {
	// The status flags of a pipe's read end that F_SETFL changes mean
	// nothing for it but O_NONBLOCK: set, without reading them first.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		closeOwned(fd, owner)
		return nil, err
	}
	if w == nil {
		w = io.Discard
	}
	p := &outPipe{fd: fd, owner: owner, w: w, pending: pend.Data, cut: pend.Cut}
	o.mu.Lock()
	o.pipes[fd] = p
	o.mu.Unlock()
	if err := unix.EpollCtl(o.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		o.drop(fd)
		return nil, err
	}
	return p, nil
}

// closeOwned closes fd through owner when there is one, so that owner's
// finalizer does not close the number again once it is reused.
func closeOwned(fd int, owner *os.File) {
	if owner != nil {
		owner.Close()
		return
	}
	unix.Close(fd)
}

func (o *outputPoller) drop(fd int) {
	o.mu.Lock()
	p := o.pipes[fd]
	delete(o.pipes, fd)
	o.mu.Unlock()
	var owner *os.File
	if p != nil {
		p.flush()
		owner = p.owner
	}
	unix.EpollCtl(o.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	closeOwned(fd, owner)
}

func (o *outputPoller) loop() {
	defer close(o.done)
	events := make([]unix.EpollEvent, 64)
	buf := make([]byte, readQuantum)
	for {
		n, err := unix.EpollWait(o.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == o.efd {
				o.mu.Lock()
				paused := o.paused
				o.mu.Unlock()
				if !paused {
					o.closeAll(buf)
				}
				return
			}
			o.mu.Lock()
			p := o.pipes[fd]
			o.mu.Unlock()
			if p == nil {
				continue
			}
			if !p.drain(buf) {
				o.drop(fd)
			}
		}
	}
}

// drain reads one quantum of what the pipe has; false at EOF or on an error.
func (p *outPipe) drain(buf []byte) bool {
	for {
		n, err := unix.Read(p.fd, buf)
		if n > 0 {
			p.feed(buf[:n])
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true
		case err != nil || n == 0:
			return false
		}
		return true
	}
}

// feed splits data into lines, holding a partial last line (at most maxLine
// of it: the rest of a long line is counted and dropped).
func (p *outPipe) feed(data []byte) {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if len(p.pending) > 0 || p.cut > 0 {
			p.hold(data[:i+1])
			p.flush()
		} else if i+1 > maxLine {
			p.hold(data[:i+1])
			p.flush()
		} else {
			p.w.Write(data[:i+1])
		}
		data = data[i+1:]
	}
	p.hold(data)
}

// hold adds to the pending line what fits in maxLine (one byte more, to tell
// a long line apart) and counts the rest as cut.
func (p *outPipe) hold(data []byte) {
	room := maxLine + 1 - len(p.pending)
	if len(data) <= room {
		p.pending = append(p.pending, data...)
		return
	}
	if room > 0 {
		p.pending = append(p.pending, data[:room]...)
		data = data[room:]
	}
	if len(data) > 0 && data[len(data)-1] == '\n' {
		// Keep the newline: it ends the line.
		p.cut += len(data) - 1
		p.pending = append(p.pending, '\n')
		return
	}
	p.cut += len(data)
}

func (p *outPipe) flush() {
	if len(p.pending) > 0 || p.cut > 0 {
		line := bytes.TrimSuffix(p.pending, []byte{'\n'})
		if len(line) > maxLine || p.cut > 0 {
			text, _ := logs.CutText(string(line), maxLine, p.cut)
			p.w.Write([]byte(text + "\n"))
		} else {
			p.w.Write(p.pending)
		}
	}
	p.cut = 0
	if cap(p.pending) > 4096 {
		p.pending = nil
	} else {
		p.pending = p.pending[:0]
	}
}

// closeAll reads what is left in every pipe and closes them.
func (o *outputPoller) closeAll(buf []byte) {
	o.mu.Lock()
	fds := make([]int, 0, len(o.pipes))
	for fd := range o.pipes {
		fds = append(fds, fd)
	}
	o.mu.Unlock()
	for _, fd := range fds {
		o.mu.Lock()
		p := o.pipes[fd]
		o.mu.Unlock()
		p.drain(buf)
		o.drop(fd)
	}
}

// Close stops the poller; pipes still open are read once more and closed.
func (o *outputPoller) Close() error {
	var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}
	unix.Write(o.efd, one)
	<-o.done
	unix.Close(o.efd)
	return unix.Close(o.epfd)
}

// pause stops the loop without closing the pipes (a handover): what the
// workers write stays in the pipes. resume starts it again.
func (o *outputPoller) pause() {
	o.mu.Lock()
	o.paused = true
	o.mu.Unlock()
	var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}
	unix.Write(o.efd, one)
	<-o.done
}

func (o *outputPoller) resume() {
	var b [8]byte
	unix.Read(o.efd, b[:])
	o.mu.Lock()
	o.paused = false
	o.done = make(chan struct{})
	o.mu.Unlock()
	go o.loop()
}

// detach takes a paused pipe out of the poller and returns its read end,
// with the line it had begun; ok is false when the pipe has already ended.
// The read end stays in the poller's epoll set, which an exec closes: a
// handover that does not happen takes it out with unregister before the
// pipe is polled again.
//
// The read end comes back blocking, as the next process finds it, in the
// file that held it if it was handed over to this process, else in a new
// one: os.NewFile then does not register it with the runtime's poller, nor
// does Fd change it.
func (o *outputPoller) detach(p *outPipe) (f *os.File, pend handover.Pending, ok bool) {
	o.mu.Lock()
	cur := o.pipes[p.fd]
	if cur == p {
		delete(o.pipes, p.fd)
	}
	o.mu.Unlock()
	if cur != p {
		return nil, pend, false
	}
	pend = handover.Pending{Data: append([]byte(nil), p.pending...), Cut: p.cut}
	unix.FcntlInt(uintptr(p.fd), unix.F_SETFL, 0)
	if p.owner != nil {
		return p.owner, pend, true
	}
	return os.NewFile(uintptr(p.fd), "opsvc-output"), pend, true
}

// unregister takes a detached read end out of the epoll set.
func (o *outputPoller) unregister(fd int) {
	unix.EpollCtl(o.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// addFile polls a handed-over read end, held by f, the begun line first:
// f is closed when the pipe ends (or at once, on an error).
func (o *outputPoller) addFile(f *os.File, w io.Writer, pend handover.Pending) (*outPipe, error) {
	// The number, without the change to blocking mode that f.Fd() makes.
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		f.Close()
		return nil, err
	}
	return o.add(fd, f, w, pend)
}
