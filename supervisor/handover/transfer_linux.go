package handover

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// MaxFiles bounds the files of one transfer (Receive).
const MaxFiles = 1 << 16

// batchFiles is how many files go with one message: the kernel passes at
// most 253 (SCM_MAX_FD) with one.
const batchFiles = 200

// maxNamesBytes bounds a frame that names a batch of files.
const maxNamesBytes = 1 << 20

// Frames of a transfer: a kind byte, a 4-byte big-endian length, the
// payload.
const (
	frameFiles  = 'F' // a JSON array of names; the files are attached
	frameRecord = 'R' // the record, as EncodeBinary writes it
	frameAnswer = 'A' // the receiver's answer: JSON {"ok", "reason"}
)

// Send writes the record and the files to conn, a connected unix stream
// socket, for Receive at the other end: the files in batches, each batch
// one frame that names them with the files attached (SCM_RIGHTS), then the
// record. Record.FDs is left out. The files stay open here.
func Send(conn *net.UnixConn, r *Record, fs Files) error {
	names := fs.Names()
	for len(names) > 0 {
		n := min(len(names), batchFiles)
		batch := names[:n]
		names = names[n:]
		payload, err := json.Marshal(batch)
		if err != nil {
			return fmt.Errorf("handover: send files: %w", err)
		}
		fds := make([]int, n)
		for i, name := range batch {
			fds[i] = int(fs[name].Fd())
		}
		if err := writeFrame(conn, frameFiles, payload, unix.UnixRights(fds...)); err != nil {
			return fmt.Errorf("handover: send files: %w", err)
		}
	}
	fds := r.FDs
	r.FDs = nil
	b, err := EncodeBinary(r)
	r.FDs = fds
	if err != nil {
		return err
	}
	if err := writeFrame(conn, frameRecord, b, nil); err != nil {
		return fmt.Errorf("handover: send the state record: %w", err)
	}
	return nil
}

// writeFrame writes one frame, oob attached to its first byte.
func writeFrame(conn *net.UnixConn, kind byte, payload, oob []byte) error {
	frame := make([]byte, 5, 5+len(payload))
	frame[0] = kind
	binary.BigEndian.PutUint32(frame[1:], uint32(len(payload)))
	frame = append(frame, payload...)
	n, _, err := conn.WriteMsgUnix(frame, oob, nil)
	if err != nil {
		return err
	}
	if n < len(frame) { // a stream socket may take part of it
		_, err = conn.Write(frame[n:])
	}
	return err
}

// Receive reads what Send wrote, within bounds (MaxFiles files,
// MaxRecordBytes of record); the caller bounds the time with a deadline on
// conn. The record must be of this binary's Version (Decode). Every file
// received is close-on-exec; on an error, those received are closed.
func Receive(conn *net.UnixConn) (*Record, Files, error) {
	rd := &fdReader{conn: conn}
	fs := make(Files)
	fail := func(err error) (*Record, Files, error) {
		fs.Close()
		rd.closeQueued()
		return nil, nil, err
	}
	received := 0
	for {
		kind, payload, err := rd.frame(MaxRecordBytes)
		if err != nil {
			return fail(err)
		}
		switch kind {
		case frameFiles:
			if len(payload) > maxNamesBytes {
				return fail(fmt.Errorf("handover: a batch of names is %d bytes, over %d", len(payload), maxNamesBytes))
			}
			var names []string
			if err := json.Unmarshal(payload, &names); err != nil {
				return fail(fmt.Errorf("handover: a batch of names: %v", err))
			}
			if len(names) > len(rd.fds) {
				return fail(fmt.Errorf("handover: %d files named, %d received", len(names), len(rd.fds)))
			}
			received += len(names)
			if received > MaxFiles {
				return fail(fmt.Errorf("handover: over %d files", MaxFiles))
			}
			for _, name := range names {
				fd := rd.fds[0]
				rd.fds = rd.fds[1:]
				if old := fs[name]; old != nil {
					old.Close() // one file per name
				}
				fs[name] = os.NewFile(uintptr(fd), name)
			}
		case frameRecord:
			if len(rd.fds) > 0 {
				return fail(fmt.Errorf("handover: %d files received that no batch named", len(rd.fds)))
			}
			r, err := Decode(payload)
			if err != nil {
				return fail(err)
			}
			r.FDs = nil
			return r, fs, nil
		default:
			return fail(fmt.Errorf("handover: unknown frame %q", kind))
		}
	}
}

// Answer tells the sender whether the receiver takes over: nil yes, or why
// not.
func Answer(conn *net.UnixConn, refusal error) error {
	a := answer{OK: refusal == nil}
	if refusal != nil {
		a.Reason = refusal.Error()
	}
	b, _ := json.Marshal(a)
	return writeFrame(conn, frameAnswer, b, nil)
}

// ReadAnswer reads the receiver's Answer: nil when it takes over, else an
// error with its reason (or why no answer came).
func ReadAnswer(conn *net.UnixConn) error {
	rd := &fdReader{conn: conn}
	defer rd.closeQueued()
	kind, payload, err := rd.frame(maxNamesBytes)
	if err != nil {
		return fmt.Errorf("no answer from the new daemon: %w", err)
	}
	var a answer
	if kind != frameAnswer || json.Unmarshal(payload, &a) != nil {
		return errors.New("the new daemon's answer is not one")
	}
	if !a.OK {
		if len(a.Reason) > 1024 {
			a.Reason = a.Reason[:1024]
		}
		return fmt.Errorf("the new daemon refused: %s", a.Reason)
	}
	return nil
}

type answer struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// fdReader reads frames and the files attached to them.
type fdReader struct {
	conn *net.UnixConn
	buf  []byte
	fds  []int // received, not yet claimed by a frame
}

// frame reads the next frame, of at most max bytes of payload.
func (rd *fdReader) frame(max int) (byte, []byte, error) {
	if err := rd.fill(5); err != nil {
		return 0, nil, err
	}
	kind := rd.buf[0]
	n := binary.BigEndian.Uint32(rd.buf[1:5])
	if uint64(n) > uint64(max) {
		return 0, nil, fmt.Errorf("handover: a frame of %d bytes, over %d", n, max)
	}
	if err := rd.fill(5 + int(n)); err != nil {
		return 0, nil, err
	}
	payload := make([]byte, n)
	copy(payload, rd.buf[5:5+int(n)])
	rd.buf = append(rd.buf[:0], rd.buf[5+int(n):]...)
	return kind, payload, nil
}

// fill reads until at least n bytes are buffered, collecting the files
// that come with them (close-on-exec: ReadMsgUnix asks for it).
func (rd *fdReader) fill(n int) error {
	oob := make([]byte, unix.CmsgSpace(256*4))
	for len(rd.buf) < n {
		chunk := make([]byte, min(max(n-len(rd.buf), 4096), 1<<20))
		k, oobn, flags, _, err := rd.conn.ReadMsgUnix(chunk, oob)
		if oobn > 0 {
			cmsgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
			if perr == nil {
				for _, c := range cmsgs {
					if fds, err := unix.ParseUnixRights(&c); err == nil {
						for _, fd := range fds {
							unix.CloseOnExec(fd)
						}
						rd.fds = append(rd.fds, fds...)
					}
				}
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return errors.New("handover: files were cut off in transit")
		}
		rd.buf = append(rd.buf, chunk[:k]...)
		if err != nil {
			if errors.Is(err, io.EOF) && len(rd.buf) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if k == 0 && oobn == 0 {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

func (rd *fdReader) closeQueued() {
	for _, fd := range rd.fds {
		unix.Close(fd)
	}
	rd.fds = nil
}
