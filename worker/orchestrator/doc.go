// Package orchestrator is the built-in worker that runs an orchestrator unit's chain of agent
// sessions (opsvc worker orchestrator); it never leaves a session's processes running after it exits.
//
// # Chains and sessions
//
// The worker never writes the registry: it asks the daemon, its one writer, over the IPC channel
// (requests chain.begin, session.record and chain.finish of package chain; see Recorder). On start
// it asks for a chain (event chain.created), or, with resume = true, for the newest incomplete
// chain of its unit to be marked interrupted and continued as a new chain whose restarted_from is
// the old one (event chain.resumed), in one change. The handoff carried over is the newest
// non-empty handoff file of the old chain's recorded sessions; a session the old worker did not
// live to record is not looked at. A resumed chain counts its sessions, cost and errors afresh:
// the limits hold per chain.
//
// A record the daemon cannot take for now (its storage is full, it is busy, or it did not answer
// within 30 s) is asked for again, after 250 ms and then twice as long each time up to 30 s, until
// it is taken: the status line says so, and the log has what is being recorded (a session's
// result), so that nothing is lost silently. A record the daemon refuses ends the worker with
// status 1. When the daemon goes away (EOF on the channel: it is the worker's parent) the running
// session is interrupted and the worker exits with status 0, recording nothing more; the chain
// stays as last recorded, running, and a resume continues it. A worker started outside opsvc runs
// its chain unrecorded.
//
// Before each session the worker asks the daemon for a lease (request session.acquire) and waits,
// as long as the daemon says, until it gets one; it releases the lease (session.release, with the
// session's cost) after the session. A worker started outside opsvc runs without leases.
//
// A session runs the unit's agent command in project_dir (or, with git = "worktree", in the
// chain's own git worktree on branch opsvc/CHAIN_ID, see below) with the prompt on stdin: the task,
// and, when an earlier session of the chain left a non-empty handoff file, a blank line, the line
// "Previous session handoff:" and that file's content. With agent unset, or "claude", the command
// is Claude Code's: claude -p --output-format stream-json --verbose --model M --max-turns N, then
// --resume SESSION_ID when the previous handoff holds ResumeMarker, then extra_args; a custom
// agent argv has {model}, {max_turns} and {session_id} replaced, then extra_args. The session
// records the argv as run (shell-quoted) and the model and turn limit that reached it. The agent's
// environment is the worker's, without the IPC and sd_notify variables (OPSVC_IPC_FD,
// NODE_CHANNEL_FD, NODE_CHANNEL_SERIALIZATION_MODE, OPSVC_ORCHESTRATOR, OPSVC_HEARTBEAT_USEC,
// NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID), with OPSVC_CHAIN_ID, OPSVC_SESSION_INDEX,
// OPSVC_MODEL, OPSVC_MAX_TURNS, OPSVC_HANDOFF_IN (the previous handoff, or empty),
// OPSVC_HANDOFF_OUT (STATE/handoffs/CHAIN/INDEX.md) and OPSVC_RESULT
// (STATE/handoffs/CHAIN/INDEX.result.json, removed before the session). Its stderr lines go to the
// worker's stderr and its stdout lines to the worker's stdout; the last MiB of stdout is kept to
// find the result.
//
// # Progress and budgets
//
// Each stdout line is read as it comes as Claude Code's stream-json (system/init, assistant
// messages with their usage and tool uses, the result); what it shows is published as
// session.progress events (chain.Progress), at most one per 250 ms and a last one when the output
// ends. The running cost is priced from the token usage at list prices until the result gives
// Claude Code's total_cost_usd. A session may spend the least of what is left of the chain's
// max_budget_usd (-1: no limit; 0: nothing, and no session starts) and of the daily budgets the
// lease says are left; when its running cost passes that, checked at every streamed message, its
// process group gets SIGINT (SIGKILL after 5 s), it is recorded interrupted with reason budget and
// its cost so far, and the chain ends budget_exceeded. Each lease also carries the daemon's current
// limits (model, max_turns, max_budget_usd where the unit sets none), which the next session runs
// under; the command settings.changed wakes a worker waiting for a lease.
//
// # Worktrees
//
// With git = "worktree" the chain's branch (branch, default opsvc/{chain_id}; a resumed chain's
// parent's branch, from chain.begin's reply) gets a worktree STATE/worktrees/BRANCH, made from
// project_dir's HEAD when the branch is new, reused when it exists (a resumed chain's). Each
// session records the branch's last commit. The worktree is removed when the chain ends with a
// final status; an interrupted chain keeps it for its resumption. The branch always stays.
//
// # Results
//
// The result comes from the JSON object in the file at OPSVC_RESULT (session_id, turns, cost_usd,
// input_tokens, output_tokens, done, handoff_complete, error; duration_ms and hit_max_turns are
// read too). Without a readable file it comes from the last line of stdout that is a JSON object
// with "type":"result", as Claude Code prints with --output-format json (one object) or
// stream-json (the last line): subtype, is_error, num_turns, total_cost_usd, session_id,
// duration_ms, usage.input_tokens, usage.output_tokens and result. Subtype error_max_turns is a
// complete session that hit its turn limit; is_error or error_during_execution is an error session.
// A result decides the session's status whatever the agent's exit status; an agent that gives no
// result has failed ("agent exited with status N and gave no result: LAST STDERR LINE").
//
// A Claude Code session ends its chain by putting the marker [opsvc:done] in its final message
// (the result text); a result object or file may say "done": true instead. handoff_complete is
// true when the handoff file exists and is not empty, unless the result file says otherwise.
//
// After each session the chain ends, in this order: budget_exceeded when the session was
// interrupted for its budget; complete when the session said done; budget_exceeded when the
// chain's cost reached max_budget_usd; failed when
// max_consecutive_errors sessions in a row were errors; exhausted when 1 + max_continuations
// sessions have run. A chain that ends ends the worker, with status 0.
//
// # Stopping
//
// On shutdown (or EOF on the channel, or the context's end) the running session's process group
// gets SIGINT, and SIGKILL after min(deadline/2, 5s); the session is recorded interrupted, the
// chain interrupted (event chain.interrupted), and the worker returns (after EOF, with nothing
// recorded). A shutdown with drain lets
// the running session finish and records it; the chain is then interrupted, so that it can be
// resumed, unless that session ended it. Between sessions the worker stops at once.
//
// Each session runs under a guard: the worker's own binary (/proc/self/exe) re-executed in a new
// process group, with OPSVC_SESSION_GUARD set, which Main recognises. The guard starts the agent
// in its group with PR_SET_PDEATHSIG SIGKILL, passes its exit status on (128+N for a signal),
// and kills the whole group, the agent's descendants included, when the worker dies (its end of
// a pipe from the worker reads EOF). The worker kills the group when a session ends, so nothing a
// session started outlives it.
package orchestrator
