#!/bin/sh
# A stand-in for an AI coding agent, as an orchestrator unit runs it: the prompt comes on stdin,
# the handoff goes to $OPSVC_HANDOFF_OUT and the result to $OPSVC_RESULT. It says done on the
# third session of a chain. No network, nothing installed.
set -eu
lines=$(wc -l)
index=${OPSVC_SESSION_INDEX:-0}
echo "stand-in agent: chain ${OPSVC_CHAIN_ID:-?} session $index (model ${OPSVC_MODEL:-?}), prompt of $lines lines"
if [ -n "${OPSVC_HANDOFF_IN:-}" ]; then
	echo "stand-in agent: continuing from $OPSVC_HANDOFF_IN"
fi
sleep 2
done=false
if [ "$index" -ge 2 ]; then
	done=true
fi
if [ -n "${OPSVC_HANDOFF_OUT:-}" ]; then
	printf 'Session %s of chain %s: did step %s of 3.\n' "$index" "${OPSVC_CHAIN_ID:-?}" "$((index + 1))" > "$OPSVC_HANDOFF_OUT"
fi
if [ -n "${OPSVC_RESULT:-}" ]; then
	printf '{"session_id":"standin-%s-%s","turns":%s,"cost_usd":0.%s,"input_tokens":1200,"output_tokens":340,"done":%s}\n' \
		"${OPSVC_CHAIN_ID:-none}" "$index" "$((index + 3))" "$((index + 10))" "$done" > "$OPSVC_RESULT"
fi
echo "stand-in agent: session $index finished (done=$done)"
