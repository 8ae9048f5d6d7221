package sdnotify

import (
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notify sends state (newline-separated KEY=VALUE lines) to the service manager at $NOTIFY_SOCKET, the
// daemon's own systemd. It returns (false, nil) when NOTIFY_SOCKET is unset, and never unsets it, so
// later WATCHDOG=1 pings still reach the manager.
func Notify(state string) (sent bool, err error) {
	sent, err = daemon.SdNotify(false, state)
	if err != nil {
		return false, fmt.Errorf("sdnotify: notify the service manager at $NOTIFY_SOCKET: %w", err)
	}
	return sent, nil
}

// WatchdogInterval returns how often the daemon should send WATCHDOG=1: half of $WATCHDOG_USEC when
// that is set and $WATCHDOG_PID is unset or this process. Otherwise, or when the values do not parse,
// it returns 0: no watchdog. The environment is left as it is.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
