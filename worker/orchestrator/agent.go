package orchestrator

import (
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/opsvc/opsvc/unit"
)

// ResumeMarker in a session's handoff file asks for the next session to continue the agent's
// session (Claude Code's --resume SESSION_ID) instead of starting a fresh one.
const ResumeMarker = "[opsvc:resume]"

// Placeholders a custom agent argv may use.
const (
	PlaceholderModel     = "{model}"
	PlaceholderMaxTurns  = "{max_turns}"
	PlaceholderSessionID = "{session_id}"
)

// isPreset reports whether agent is the built-in Claude Code preset: absent, or "claude" alone.
func isPreset(agent []string) bool {
	return len(agent) == 0 || (len(agent) == 1 && agent[0] == unit.AgentPreset)
}

// agentCall is the command line of one session and what reached it.
type agentCall struct {
	argv     []string
	model    string // the model on the command line, or ""
	maxTurns int    // the turn limit on the command line, or 0
}

// agentArgv is the argv of a session: the preset's, `claude -p --output-format stream-json
// --verbose --model M --max-turns N [--resume ID]` then extra_args, or the custom agent with its
// placeholders replaced, then extra_args. resume is the agent session to continue, or "".
func agentArgv(agent, extra []string, model string, maxTurns int, resume string) agentCall {
	turns := strconv.Itoa(maxTurns)
	if isPreset(agent) {
		argv := []string{unit.AgentPreset, "-p", "--output-format", "stream-json", "--verbose", "--model", model, "--max-turns", turns}
		if resume != "" {
			argv = append(argv, "--resume", resume)
		}
		return agentCall{argv: append(argv, extra...), model: model, maxTurns: maxTurns}
	}
	call := agentCall{argv: make([]string, 0, len(agent)+len(extra))}
	r := strings.NewReplacer(PlaceholderModel, model, PlaceholderMaxTurns, turns, PlaceholderSessionID, resume)
	for i, a := range slices.Concat(agent, extra) {
		if i > 0 { // the program itself is taken as written
			if strings.Contains(a, PlaceholderModel) {
				call.model = model
			}
			if strings.Contains(a, PlaceholderMaxTurns) {
				call.maxTurns = maxTurns
			}
			a = r.Replace(a)
		}
		call.argv = append(call.argv, a)
	}
	return call
}

// wantsResume reports whether the handoff file asks for the agent's session to be continued.
func wantsResume(handoff string) bool {
	if handoff == "" {
		return false
	}
	f, err := os.Open(handoff)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, _ := f.Read(buf)
	return strings.Contains(string(buf[:n]), ResumeMarker)
}

// shellQuote is argv as a shell would take it back: words quoted where needed.
func shellQuote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}
