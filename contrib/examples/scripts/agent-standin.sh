#!/bin/sh
# A stand-in for Claude Code, as an orchestrator unit runs it: flags --model M --max-turns N, the
# prompt on stdin, Claude Code's stream-json on stdout (system/init, one assistant turn with a tool
# use and its token usage a second, the result with its cost), the handoff in $OPSVC_HANDOFF_OUT.
# It says done ([opsvc:done]) on the third session of a chain. No network, nothing installed.
set -eu
model=sonnet turns_max=30
while [ $# -gt 0 ]; do
	case $1 in
	--model) shift; model=$1 ;;
	--max-turns) shift; turns_max=$1 ;;
	esac
	shift
done
lines=$(wc -l)
index=${OPSVC_SESSION_INDEX:-0}
echo "stand-in agent: chain ${OPSVC_CHAIN_ID:-?} session $index, model $model, prompt of $lines lines" >&2
sid="standin-${OPSVC_CHAIN_ID:-none}-$index"
printf '{"type":"system","subtype":"init","session_id":"%s","model":"%s","tools":["Read","Edit","Bash"]}\n' "$sid" "$model"
turns=$((index + 3))
[ "$turns" -gt "$turns_max" ] && turns=$turns_max
n=0
for tool in Read Grep Edit Bash Read; do
	[ "$n" -ge "$turns" ] && break
	n=$((n + 1))
	sleep 1
	printf '{"type":"assistant","message":{"id":"msg_%s_%d","model":"%s","role":"assistant","content":[{"type":"tool_use","id":"toolu_%d","name":"%s","input":{}}],"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":4000,"output_tokens":340}},"session_id":"%s"}\n' "$sid" "$n" "$model" "$n" "$tool" "$sid"
	printf '{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_%d","content":"ok"}]},"session_id":"%s"}\n' "$n" "$sid"
done
text="Did step $((index + 1)) of 3."
if [ "$index" -ge 2 ]; then
	text="$text All done. [opsvc:done]"
fi
if [ -n "${OPSVC_HANDOFF_OUT:-}" ]; then
	printf 'Session %s of chain %s: did step %s of 3.\n' "$index" "${OPSVC_CHAIN_ID:-?}" "$((index + 1))" > "$OPSVC_HANDOFF_OUT"
fi
cost=$(awk -v n="$n" 'BEGIN { printf "%.6f", n * (1200 * 3 + 4000 * 0.3 + 340 * 15) / 1000000 }')
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":%d,"result":"%s","session_id":"%s","total_cost_usd":%s,"usage":{"input_tokens":%d,"cache_read_input_tokens":%d,"output_tokens":%d}}\n' \
	"$n" "$text" "$sid" "$cost" $((n * 1200)) $((n * 4000)) $((n * 340))
