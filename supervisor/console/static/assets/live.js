// The live event feed: one WebSocket on /v1/events/ws that resumes from the
// last seq it saw after any disconnect, so no event is missed.

export class Live {
  // since: the seq to start after (GET /v1/whoami's last_seq).
  constructor(since, { onEvent, onState }) {
    this.seq = since;
    this.onEvent = onEvent;
    this.onState = onState;
    this.delay = 250;
    this.failures = 0;
    this.ws = null;
    this.stopped = false;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
  }

  connect() {
    if (this.stopped) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/v1/events/ws?since=${this.seq}`);
    this.ws = ws;
    this.onState(this.failures ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      this.delay = 250;
      this.failures = 0;
      this.onState('live');
    };
    ws.onmessage = msg => {
      let e;
      try { e = JSON.parse(msg.data); } catch { return; }
      if (e.type === 'bus.lagged') {
        // Cut off for falling behind: resume where the daemon says.
        this.seq = Number(e.data && e.data.dropped_after) || this.seq;
        return;
      }
      if (e.seq > this.seq) this.seq = e.seq;
      this.onEvent(e);
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.stopped) return;
      this.failures++;
      this.onState('reconnecting');
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, 10000);
      setTimeout(() => this.connect(), wait);
      if (this.failures === 3) window.dispatchEvent(new CustomEvent('opsvc:check-session'));
    };
  }
}
