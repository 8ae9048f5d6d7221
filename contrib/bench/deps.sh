#!/usr/bin/env bash
# deps.sh - install the peer supervisors that `make bench` compares opsvc with
# (`make bench-deps`). Idempotent; a peer that fails to install is reported and
# skipped, never fatal.
#
#   Debian: supervisor (supervisord), runit (runsvdir/runsv/sv), s6
#           (s6-svscan/s6-supervise/s6-svc), each with --no-install-recommends so
#           that no init system (runit-init, runit-run) comes along.
#   npm:    pm2, into contrib/bench/.deps/ (PM2_VERSION=x.y.z to pick the version).
#
# It changes no init configuration. A package's postinst may start its daemon
# (Debian's supervisor does through its init script): exactly the new pids of
# that daemon are stopped again, by pid.
set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPS=$HERE/.deps
PM2_VERSION=${PM2_VERSION:-7.0.4}
failed=()

log() { printf 'bench-deps: %s\n' "$*" >&2; }

# pids whose argv[0] (or argv[1], for an interpreter) has basename $1 and
# whose argv contains the word $2: exactly the system daemon a postinst starts.
daemon_pids() { # PROG ARG
  local p args
  for p in /proc/[0-9]*; do
    mapfile -d '' -t args <"$p/cmdline" 2>/dev/null || continue
    ((${#args[@]})) || continue
    [[ ${args[0]##*/} == "$1" || ${args[1]:-} == */"$1" ]] || continue
    [[ " ${args[*]} " == *" $2 "* ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

stop_pid() { # PID: TERM, up to 10 s, then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null
}

have() { local c; for c; do command -v "$c" >/dev/null 2>&1 || return 1; done; }

# ------------------------------------------------------------ Debian packages
declare -A bins=([supervisor]="supervisord supervisorctl" [runit]="runsvdir runsv sv"
  [s6]="s6-svscan s6-supervise s6-svc s6-svstat s6-svscanctl")
need=()
for pkg in supervisor runit s6; do
  # shellcheck disable=SC2086
  have ${bins[$pkg]} || need+=("$pkg")
done

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "not root: cannot apt-get install ${need[*]} (run make bench-deps as root)"
    failed+=("${need[@]}")
  elif ! have apt-get; then
    log "apt-get not found: cannot install ${need[*]}"
    failed+=("${need[@]}")
  else
    export DEBIAN_FRONTEND=noninteractive
    mapfile -t old_supd < <(daemon_pids supervisord /etc/supervisor/supervisord.conf)
    mapfile -t old_rsvd < <(daemon_pids runsvdir /etc/service)
    log "apt-get update"
    timeout 600 apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null || log "apt-get update failed; trying the install anyway"
    for pkg in "${need[@]}"; do
      log "installing $pkg"
      if ! timeout 900 apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "$pkg" >/dev/null; then
        log "could not install $pkg; it will be skipped by make bench"
        failed+=("$pkg")
      fi
    done
    # Stop exactly the daemons a postinst started (new pids only).
    for spec in "supervisord /etc/supervisor/supervisord.conf" "runsvdir /etc/service"; do
      read -r prog arg <<<"$spec"
      if [[ $prog == supervisord ]]; then old=" ${old_supd[*]:-} "; else old=" ${old_rsvd[*]:-} "; fi
      while read -r pid; do
        [[ -n $pid && $old != *" $pid "* ]] || continue
        log "the $prog package started $prog (pid $pid); stopping exactly that pid"
        stop_pid "$pid"
      done < <(daemon_pids "$prog" "$arg")
    done
    if dpkg-query -W -f='${Status}' runit-init 2>/dev/null | grep -q 'install ok installed'; then
      log "warning: runit-init is installed on this machine (not by this script)"
    fi
  fi
else
  log "supervisor, runit and s6 already installed"
fi

# ------------------------------------------------------------ PM2 (npm, local)
if [[ -x $DEPS/node_modules/.bin/pm2 && -f $DEPS/node_modules/pm2/package.json ]]; then
  log "pm2 already in ${DEPS#"$HERE"/}"
elif ! have node npm; then
  log "node/npm not found: pm2 skipped (apt-get install nodejs npm)"
  failed+=(pm2)
else
  log "installing pm2@$PM2_VERSION into contrib/bench/.deps"
  mkdir -p "$DEPS"
  # a package.json of its own keeps npm from walking up to another project
  [[ -f $DEPS/package.json ]] || printf '{"name":"opsvc-bench-deps","private":true}\n' >"$DEPS/package.json"
  if ! timeout 900 npm install --prefix "$DEPS" --no-fund --no-audit --loglevel=error "pm2@$PM2_VERSION" >/dev/null; then
    log "could not install pm2; it will be skipped by make bench"
    failed+=(pm2)
  fi
fi

# ------------------------------------------------------------ report
ver() { "$@" 2>/dev/null | head -n1 || true; }
log "versions:"
printf '  supervisord %s\n' "$(ver supervisord --version)"
printf '  runit       %s\n' "$(ver dpkg-query -W -f='${Version}' runit)"
printf '  s6          %s\n' "$(ver dpkg-query -W -f='${Version}' s6)"
printf '  pm2         %s\n' "$(ver node -p 'require(process.argv[1]).version' "$DEPS/node_modules/pm2/package.json")"
if ((${#failed[@]})); then
  log "not installed: ${failed[*]} (make bench skips them)"
fi
exit 0
