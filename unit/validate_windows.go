package unit

import (
	"fmt"
	"strings"
)

// platformChecks refuses what has no meaning on Windows, rather than ignore
// it: sd_notify (type = "notify", notify_access, a watchdog fed by
// WATCHDOG=1), another user or group, and stop signals other than those a
// stop can deliver there (SIGTERM and SIGINT are sent as CTRL_BREAK_EVENT to
// the process group; SIGKILL terminates the unit's Job object).
func platformChecks(e *effective, svc *Service, add func(origin, string, string)) {
	if v, ok := e.one["service.type"]; ok && Type(v.v.(string)) == TypeNotify {
		add(v.origin, `type = "notify" is not supported on Windows: there is no sd_notify there`,
			`use type = "ipc" (the worker says ready on its channel) or "simple"`)
	}
	if v, ok := e.one["service.notify_access"]; ok {
		add(v.origin, fmt.Sprintf("notify_access = %q is not supported on Windows: there is no sd_notify there", v.v),
			"remove notify_access")
	}
	for _, what := range []string{"user", "group"} {
		if v, ok := e.one["service."+what]; ok {
			add(v.origin, fmt.Sprintf("%s = %q is not supported on Windows: workers run as the daemon's account", what, v.v),
				fmt.Sprintf("remove %s, and run the daemon (or its service) as the account the worker needs", what))
		}
	}
	if v, ok := e.one["service.stop_signal"]; ok {
		sig := strings.ToUpper(v.v.(string))
		if !strings.HasPrefix(sig, "SIG") {
			sig = "SIG" + sig
		}
		switch sig {
		case "SIGTERM", "SIGINT", "SIGKILL":
		default:
			add(v.origin, fmt.Sprintf("stop_signal = %q has no meaning on Windows", v.v),
				`use "SIGTERM" or "SIGINT" (sent as CTRL_BREAK_EVENT to the process group), or "SIGKILL" (the unit's processes are ended at once)`)
		}
	}
	if v, ok := e.one["service.watchdog"]; ok && svc.Watchdog > 0 && svc.Type != TypeIPC && svc.Type != TypeOrchestrator {
		add(v.origin, fmt.Sprintf("watchdog on a %s unit is not supported on Windows: its heartbeat is sd_notify's WATCHDOG=1", svc.Type),
			`use type = "ipc", whose worker sends heartbeats on its channel, or remove watchdog`)
	}
}
