//go:build !windows

package unit

// platformChecks refuses what has no meaning on this system: here, nothing.
func platformChecks(e *effective, svc *Service, add func(origin, string, string)) {}
