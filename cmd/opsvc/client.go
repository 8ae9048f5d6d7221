package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/api"
)

// cli is one invocation of a client verb.
type cli struct {
	ctx    context.Context
	args   args
	paths  config.Paths
	stdout io.Writer
	stderr io.Writer
	env    env
	client *http.Client
}

func (c *cli) http() *http.Client {
	if c.client == nil {
		sock := c.paths.Socket
		c.client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialControl(ctx, sock)
			},
			DisableCompression: true,
		}}
	}
	return c.client
}

func (c *cli) unreachable(err error) error {
	err = unwrapURL(err)
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return fail(exitFailure, "cannot reach the daemon at %s: permission denied (ask its owner to add you to [control] group or allow_uids in opsvc.toml, or run as the daemon's user)", c.paths.Socket)
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
		return fail(exitFailure, "cannot reach the daemon at %s: no daemon is listening there (start one with opsvc daemon, or name its socket with --socket or OPSVC_SOCKET)", c.paths.Socket)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	return fail(exitFailure, "cannot reach the daemon at %s: %v (check it runs: opsvc status; or name its socket with --socket)", c.paths.Socket, err)
}

func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// call does one request; a non-2xx answer becomes an *apiError.
func (c *cli) call(method, path string, q url.Values, body any, out any) error {
	resp, err := c.do(method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

type apiError struct {
	status int
	body   api.Error
	raw    []byte
}

func (e *apiError) Error() string {
	msg := stripPackage(e.body.Message)
	if e.body.Hint != "" {
		return msg + " (" + e.body.Hint + ")"
	}
	return msg
}

// stripPackage drops a Go package prefix ("supervisor: ") from a daemon's
// message: the user runs opsvc, not its packages.
func stripPackage(s string) string {
	for _, p := range []string{"supervisor: ", "bus: ", "logs: ", "unit: ", "config: ", "registry: ", "api: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// do sends a request and returns the response when its status is 2xx.
func (c *cli) do(method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := "http://opsvc" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(c.ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		if c.ctx.Err() != nil {
			return nil, fail(exitFailure, "interrupted")
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		ae := &apiError{status: resp.StatusCode, raw: raw}
		if json.Unmarshal(raw, &ae.body) != nil || ae.body.Message == "" {
			ae.body = api.Error{Message: fmt.Sprintf("daemon answered %s", resp.Status)}
		}
		return nil, ae
	}
	return resp, nil
}

// codeFor maps an API error to an exit code.
func codeFor(err error) int {
	if ae, ok := err.(*apiError); ok {
		switch ae.status {
		case http.StatusNotFound:
			return exitNoUnit
		case http.StatusBadRequest:
			return exitUsage
		}
		return exitFailure
	}
	if ee, ok := err.(*exitError); ok {
		return ee.code
	}
	return exitFailure
}

// asExit wraps an error from a verb on a unit in the CLI's message shape.
func asExit(op string, err error) error {
	if ee, ok := err.(*exitError); ok {
		return ee
	}
	return fail(codeFor(err), "%s: %v", op, err)
}

// streamLines calls f for each line of a streaming response until it ends.
func streamLines(r io.Reader, f func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if err := f(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms ago", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dmin %ds ago", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dmin ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}
