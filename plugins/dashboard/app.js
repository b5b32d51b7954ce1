// The hivekit dashboard: a snapshot of GET /api/state, kept live by GET /api/events (SSE).
//
// Consistency: the snapshot's seq is read before its state is gathered, so the page applies
// only events with a larger seq, in order, and keeps its state from them alone: an
// `agent_changed` carries the agent's whole row (or null) and its tombstone (or null), a
// terminal approval is followed by its agent's row. Only a gap in seq (events lost by a slow
// stream), a `resync` frame (Last-Event-ID too old) or another daemon's `boot` reloads the
// snapshot; events arriving meanwhile wait and are applied after it. The stream reconnects by
// itself, sending Last-Event-ID; while it is down the page says so and every action is off.
//
// Not in the snapshot, loaded once and then kept by events: the live log's recent history
// (GET /api/logs), the broker feed's history (each inbox, the operator's too, with what is
// unread), the answered questions and the resolved approvals.
//
// Safety: every string from the hive (names, notes, diffs, descriptions, messages) reaches the
// page through textContent or an attribute value, never as HTML.
'use strict';

(() => {
  // The access token arrives once, in the URL; the server answered with cookies, so the
  // address bar (and history, and screenshots) need not keep it.
  if (new URLSearchParams(location.search).has('token')) {
    history.replaceState(null, '', location.pathname);
  }

  const $ = (id) => document.getElementById(id);
  const LOG_LINES = 400;
  const MESSAGES = 100;
  const RESOLVED = 20;
  const ANSWERED = 20;
  const OUTPUT_LINES = 8;

  const S = {
    seq: null,            // seq of the last state applied; null before the first snapshot
    boot: null,           // the daemon's life the seq belongs to
    agents: new Map(),    // name -> agent view
    transients: {},       // name -> kind (also for agents being spawned)
    tombstones: [],
    approvals: new Map(), // id -> approval (pending or running)
    resolved: new Map(),  // id -> approval (terminal)
    questions: new Map(), // id -> pending operator question
    answered: new Map(),  // id -> resolved operator question (answered, expired, cancelled)
    unread: new Set(),    // ids of the operator's messages not yet marked read
    conflicts: [],
    busy: new Set(),      // keys of actions this tab has in flight
    online: false,        // the event stream is up (false: the daemon is away)
    offlineSince: null,
    portCheck: false,     // the snapshot has port_conflicts (the port_check plugin is on)
  };
  let csrf = '';
  let queued = [];
  let snapshotting = null;
  let authLost = false;

  // --- DOM helpers ----------------------------------------------------------------------

  // h('div', {class: 'x', onclick: f}, 'text', child): text children become text nodes.
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  // Keep container's children in the order of items, one node per key, updated in place (so a
  // half-typed answer or an open diff survives a re-render).
  function keyed(container, items, keyOf, create, update) {
    const nodes = container._nodes || (container._nodes = new Map());
    const keep = new Set();
    let prev = null;
    for (const item of items) {
      const key = keyOf(item);
      keep.add(key);
      let node = nodes.get(key);
      if (!node) {
        node = create(item);
        nodes.set(key, node);
      }
      update(node, item);
      const want = prev ? prev.nextSibling : container.firstChild;
      if (node !== want) container.insertBefore(node, want);
      prev = node;
    }
    for (const [key, node] of nodes) {
      if (!keep.has(key)) {
        node.remove();
        nodes.delete(key);
      }
    }
  }

  const short = (sha) => (sha ? sha.slice(0, 12) : '—');

  function ago(ts) {
    if (!ts) return '';
    const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
    if (s < 5) return 'just now';
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function countdown(deadline) {
    const s = Math.round(deadline - Date.now() / 1000);
    if (s <= 0) return 'expired';
    const parts = [];
    if (s >= 3600) parts.push(`${Math.floor(s / 3600)}h`);
    if (s >= 60) parts.push(`${Math.floor((s % 3600) / 60)}m`);
    parts.push(`${s % 60}s`);
    return `${parts.join(' ')} left`;
  }

  function clock(ts) {
    const d = ts ? new Date(ts * 1000) : new Date();
    return d.toTimeString().slice(0, 8);
  }

  function timeEl(ts) {
    return h('time', {class: 'ago', 'data-ts': ts, title: new Date(ts * 1000).toLocaleString()},
      ago(ts));
  }

  function tick() {
    for (const el of document.querySelectorAll('[data-ts]')) {
      el.textContent = ago(Number(el.dataset.ts));
    }
    for (const el of document.querySelectorAll('[data-deadline]')) {
      const deadline = Number(el.dataset.deadline);
      el.textContent = countdown(deadline);
      const left = deadline - Date.now() / 1000;
      el.classList.toggle('urgent', left < 60);
      const card = el.closest('.question');
      if (card && left <= 0) {
        card.classList.add('expired');
        for (const ctl of card.querySelectorAll('button, input, textarea')) ctl.disabled = true;
      }
    }
  }

  // --- talking to the hive ----------------------------------------------------------------

  function noteAuth(status) {
    if (status !== 401 || authLost) return;
    authLost = true;
    setConn('auth', 'access token needed');
    notice('This page lost its access: open the URL that `hivekit dashboard` prints ' +
      '(the token is in the daemon\'s log too).');
  }

  async function api(method, path, body) {
    const opts = {method, headers: {Accept: 'application/json'}, cache: 'no-store'};
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json';
      opts.headers['X-Hivekit-CSRF'] = csrf;
      opts.body = JSON.stringify(body || {});
    }
    const resp = await fetch(path, opts);
    csrf = resp.headers.get('X-Hivekit-CSRF') || csrf;
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (!resp.ok) {
      noteAuth(resp.status);
      throw new Error((data && data.error) || `HTTP ${resp.status}`);
    }
    return data;
  }

  function notice(text) {
    $('notice-text').textContent = text;
    $('notice').hidden = false;
  }
  $('notice-close').addEventListener('click', () => { $('notice').hidden = true; });

  // Run an operator action: its key marks what it is busy with; its error is shown.
  async function act(key, what, fn) {
    S.busy.add(key);
    render();
    try {
      return await fn();
    } catch (err) {
      notice(`${what}: ${err.message}`);
      return null;
    } finally {
      S.busy.delete(key);
      render();
    }
  }

  // --- the snapshot -----------------------------------------------------------------------

  function resnapshot() {
    if (snapshotting) return snapshotting;
    snapshotting = (async () => {
      try {
        const [state, recent, asked] = await Promise.all([
          api('GET', '/api/state'),
          api('GET', `/api/approvals?all=true&limit=${RESOLVED}`),
          api('GET', '/api/questions?all=true'),
        ]);
        load(state, recent, asked);
      } catch (err) {
        if (!authLost) setTimeout(resnapshot, 2000);
        throw err;
      } finally {
        snapshotting = null;
      }
      drain();
    })();
    snapshotting.catch(() => {});
    return snapshotting;
  }

  // Ports shared by two or more agents, as the port_check plugin's port_conflicts lists them
  // in the snapshot ({port, agents}, by port): kept current from the rows that events bring.
  function portConflicts() {
    const byPort = new Map();
    for (const a of S.agents.values()) {
      if (!a.port) continue;
      if (!byPort.has(a.port)) byPort.set(a.port, []);
      byPort.get(a.port).push(a.name);
    }
    return [...byPort.entries()].filter(([, names]) => names.length > 1)
      .sort(([p], [q]) => p - q).map(([port, names]) => ({port, agents: names.sort()}));
  }

  function load(state, recent, asked) {
    S.seq = state.seq;
    document.body.dataset.seq = String(state.seq);
    S.agents = new Map(state.agents.map((a) => [a.name, a]));
    S.transients = {...state.transients};
    S.tombstones = state.tombstones || [];
    S.approvals = new Map(state.approvals.map((a) => [a.id, a]));
    S.questions = new Map((state.questions || [])
      .filter((q) => q.status === 'pending').map((q) => [q.id, q]));
    S.answered = new Map(asked.filter((q) => q.target === 'operator' && q.status !== 'pending')
      .map((q) => [q.id, q]));
    S.portCheck = Array.isArray(state.port_conflicts);
    S.conflicts = state.port_conflicts || [];
    S.resolved = new Map();
    for (const a of recent) if (isTerminal(a)) S.resolved.set(a.id, a);
    render();
    loadHistory();
    loadLog();
  }

  // --- events -----------------------------------------------------------------------------

  function drain() {
    if (snapshotting || S.seq === null) return;
    queued.sort((a, b) => a.seq - b.seq);
    let changed = false;
    while (queued.length) {
      const ev = queued.shift();
      if (ev.seq <= S.seq) continue;
      if (ev.seq > S.seq + 1) {  // lost events: start again from a fresh snapshot
        queued.unshift(ev);
        resnapshot();
        break;
      }
      S.seq = ev.seq;
      apply(ev.type, ev.data);
      changed = true;
    }
    document.body.dataset.seq = String(S.seq);
    if (changed) render();
  }

  const isTerminal = (a) => ['approved', 'denied', 'failed'].includes(a.status);

  function apply(type, d) {
    switch (type) {
      case 'approval_added':
      case 'approval_changed': {
        const a = d.approval;
        if (isTerminal(a)) {
          S.approvals.delete(a.id);
          S.resolved.set(a.id, a);  // the agent's new row (deployed sha) comes as agent_changed
        } else {
          S.approvals.set(a.id, a);
        }
        break;
      }
      case 'question_added':
      case 'question_resolved': {
        const q = d.question;
        if (q.target !== 'operator') break;
        if (q.status === 'pending') {
          S.questions.set(q.id, q);
        } else {
          S.questions.delete(q.id);
          S.answered.set(q.id, q);
        }
        break;
      }
      case 'agent_changed':  // the whole row and tombstone: nothing to refetch
        if (d.agent) S.agents.set(d.name, d.agent);
        else S.agents.delete(d.name);
        S.tombstones = S.tombstones.filter((t) => t.name !== d.name);
        if (d.tombstone) S.tombstones.push(d.tombstone);
        if (S.portCheck) S.conflicts = portConflicts();
        break;
      case 'transient': {
        if (d.transient) S.transients[d.name] = d.transient;
        else delete S.transients[d.name];
        const agent = S.agents.get(d.name);
        if (agent) S.agents.set(d.name, {...agent, transient: d.transient});
        break;
      }
      case 'messages_read':
        if (d.recipient === 'operator') for (const id of d.ids) S.unread.delete(id);
        break;
      default:
        break;  // a feed event (below), or a plugin's event this page does not know
    }
  }

  // The feeds (broker traffic, live log) are not in the snapshot: their events are shown as
  // they arrive, once each, whatever snapshot is being loaded meanwhile.
  let feedSeq = 0;
  function feed(seq, type, d) {
    if (seq <= feedSeq) return;
    feedSeq = seq;
    if (type === 'message') {
      addMessage(d.message);
      return;
    }
    const line = logLine(type, d);
    if (line) addLog(seq, null, ...line);
  }

  // What the live log shows of an event: [agent, text, class], or null. The log's history
  // (GET /api/logs) holds the same events, so both go through here.
  function logLine(type, d) {
    switch (type) {
      case 'log':
        return [d.agent, d.line, d.stream === 'stderr' ? 'stderr' : ''];
      case 'deploy_step':
        return [d.agent, `── approval #${d.approval_id}: ${d.step}`, 'step'];
      case 'approval_changed': {
        const a = d.approval;
        if (!isTerminal(a)) return null;
        return [a.agent, `── approval #${a.id}: ${a.status}${a.tag ? ` (${a.tag})` : ''}`,
          a.status === 'failed' ? 'stderr' : 'step'];
      }
      default:
        return null;
    }
  }

  // The event stream, read with fetch so that every event type is seen, a refused request
  // (401) is told apart from a network error, and Last-Event-ID is ours to send.
  let lastEventId = '';
  let backoff = 500;

  async function stream() {
    for (;;) {
      if (authLost) return;
      try {
        await readStream();
        backoff = 500;
      } catch (_) {
        // network error or a stopping daemon: retry below
      }
      if (authLost) return;
      setConn('reconnecting', 'reconnecting…');
      setOnline(false);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }

  async function readStream() {
    const headers = {Accept: 'text/event-stream'};
    if (lastEventId) headers['Last-Event-ID'] = lastEventId;
    const resp = await fetch('/api/events', {headers, cache: 'no-store'});
    if (!resp.ok) {
      noteAuth(resp.status);
      throw new Error(`HTTP ${resp.status}`);
    }
    csrf = resp.headers.get('X-Hivekit-CSRF') || csrf;
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buf += value;
      // Normalise line ends, keeping a trailing \r that may be half of a \r\n.
      const tail = buf.endsWith('\r') ? '\r' : '';
      buf = buf.slice(0, buf.length - tail.length).replace(/\r\n?/g, '\n') + tail;
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        frame(buf.slice(0, end));
        buf = buf.slice(end + 2);
      }
    }
  }

  function frame(block) {
    let id = null;
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') id = value;
      else if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    let payload = null;
    try {
      payload = data.length ? JSON.parse(data.join('\n')) : null;
    } catch (_) {
      return;
    }
    if (id !== null) lastEventId = id;
    if (type === 'hello') {
      setConn('live', 'live');
      setOnline(true);
      const reborn = S.boot !== null && payload.boot !== S.boot;
      if (reborn) {  // another daemon: its seqs start again
        S.seq = null;
        queued = [];
        lastEventId = '';
        feedSeq = 0;
        logBoot += 1;  // the old daemon's lines stay, above the new one's
      }
      S.boot = payload.boot;
      if (S.seq === null || payload.seq > S.seq) resnapshot();
      return;
    }
    if (type === 'resync') {
      resnapshot();
      return;
    }
    if (id === null) return;
    feed(Number(id), type, payload);
    queued.push({seq: Number(id), type, data: payload});
    drain();
  }

  function setConn(state, text) {
    $('conn').dataset.state = state;
    $('conn-text').textContent = text;
  }

  // While the daemon is away: a banner, the rows greyed (what they say may be stale), and
  // every control off (a click would only fail). The controls come back as render() sets them.
  function setOnline(online) {
    if (online === S.online) return;
    S.online = online;
    if (!online && S.offlineSince === null) S.offlineSince = Date.now() / 1000;
    if (online) S.offlineSince = null;
    document.body.classList.toggle('offline', !online);
    $('offline').hidden = online || S.seq === null;
    $('offline-since').textContent = online ? '' : `(since ${clock(S.offlineSince)})`;
    render();
  }

  const CONTROLS = 'main button, main input, main select, main textarea, aside button, ' +
    'aside input, aside select';

  // Before a render: what the outage turned off is on again (the render then sets each
  // control as its state says). After it, while offline: everything off.
  function restoreControls() {
    for (const el of document.querySelectorAll('[data-offline]')) {
      el.disabled = false;
      delete el.dataset.offline;
    }
  }

  function disableControls() {
    if (S.online || S.seq === null) return;
    for (const el of document.querySelectorAll(CONTROLS)) {
      if (!el.disabled) {
        el.disabled = true;
        el.dataset.offline = '1';
      }
    }
  }

  // --- rendering --------------------------------------------------------------------------

  let renderQueued = false;
  function render() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => {
      renderQueued = false;
      restoreControls();
      renderBanner();
      renderOps();
      renderQuestions();
      renderApprovals();
      renderAgents();
      renderTombstones();
      renderResolved();
      renderAnswered();
      renderCompose();
      renderUnread();
      renderAttention();
      disableControls();
    }, 0);
  }

  function renderBanner() {
    const banner = $('banner');
    const items = S.conflicts.map((c) => {
      if (c && typeof c === 'object' && 'port' in c) {
        const who = Array.isArray(c.agents) ? c.agents.join(', ') : JSON.stringify(c.agents);
        return `port ${c.port}: ${who}`;
      }
      return typeof c === 'string' ? c : JSON.stringify(c);
    });
    banner.hidden = items.length === 0;
    banner.replaceChildren(
      h('strong', {}, items.length > 1 ? 'Port conflicts' : 'Port conflict'),
      ` — ${items.join('; ')} — these agents share a port: rename one of them and rebuild.`);
  }

  function renderOps() {
    const ops = Object.entries(S.transients).sort();
    $('ops').replaceChildren(...ops.map(([name, kind]) =>
      h('span', {class: 'pill pulse'}, `${name}: ${kind}…`)));
    $('log-hint').textContent = ops.length
      ? `running: ${ops.map(([n, k]) => `${k} ${n}`).join(', ')}`
      : "agents' output and lifecycle operations";
  }

  // Agents ------------------------------------------------------------------------------

  const VERBS = ['start', 'stop', 'restart', 'rebuild'];

  function agentRow(a) {
    const r = {};
    r.name = h('span', {class: 'name'}, a.name);
    r.manager = h('span', {class: 'tag', title: 'declared by the config; cannot be destroyed'},
      'manager');
    r.pill = h('span', {class: 'pill pulse transient'});
    r.badges = h('span', {class: 'badges'});
    r.status = h('span', {class: 'status'});
    r.port = h('span', {class: 'port mono'});
    r.sha = h('span', {class: 'sha mono'});
    r.buttons = {};
    for (const verb of VERBS) {
      r.buttons[verb] = h('button', {type: 'button', 'data-action': verb,
        onclick: () => lifecycle(a.name, verb)}, verb);
    }
    r.buttons.destroy = h('button', {type: 'button', class: 'warn', 'data-action': 'destroy',
      onclick: () => destroy(a.name, false)}, 'destroy');
    r.buttons.purge = h('button', {type: 'button', class: 'danger', 'data-action': 'purge',
      onclick: () => destroy(a.name, true)}, 'purge');
    r.actions = h('div', {class: 'actions'}, Object.values(r.buttons));
    r.detail = h('span', {class: 'detail'});
    r.help = h('div', {class: 'help'});
    r.exit = h('span', {class: 'exit mono'});
    r.output = h('pre', {class: 'output'});
    r.failure = h('div', {class: 'failure'}, h('div', {class: 'why'}, r.exit), r.output);
    const row = h('div', {class: 'agent', 'data-agent': a.name},
      h('div', {class: 'ident'},
        h('div', {class: 'line1'}, h('span', {class: 'dot'}), r.name, r.manager, r.pill,
          r.badges),
        h('div', {class: 'line2'}, r.status, r.detail, r.port, r.sha),
        r.help, r.failure),
      r.actions);
    row._r = r;
    return row;
  }

  function updateAgentRow(row, a) {
    const r = row._r;
    const transient = a.transient || S.transients[a.name] || null;
    const busy = Boolean(transient) || [...S.busy].some((k) => k === `agent:${a.name}`);
    row.classList.toggle('busy', busy);
    row.dataset.status = a.status;
    r.manager.hidden = !a.is_manager;
    r.pill.hidden = !transient;
    r.pill.textContent = transient ? `◐ ${transient}…` : '';
    r.badges.replaceChildren(...(a.badges || []).map((b) => h('span',
      {class: `badge ${b.level || 'info'}`, title: b.detail || ''}, b.label)));
    // What a warning or an error asks of the operator, in full (the fix is in its words).
    const asks = (a.badges || []).filter((b) => b.detail && b.level && b.level !== 'info');
    r.help.replaceChildren(...asks.map((b) => h('div', {class: `ask ${b.level}`},
      h('strong', {}, `${b.label}: `), b.detail)));
    r.help.hidden = asks.length === 0;
    r.status.textContent = a.status;
    r.status.className = `status ${a.status}`;
    r.detail.textContent = a.detail || '';
    r.detail.hidden = !a.detail;
    // A failing agent shows why: how its program last ended and what it said last.
    const failing = failingAgent(a);
    row.classList.toggle('failing', failing);
    r.failure.hidden = !failing;
    if (failing) {
      r.exit.textContent = a.exit_code === null || a.exit_code === undefined
        ? 'exit code unknown' : (a.exit_code < 0 ? `killed by signal ${-a.exit_code}`
          : `exit code ${a.exit_code}`);
      const lines = (a.output || []).slice(-OUTPUT_LINES);
      r.output.textContent = lines.join('\n');
      r.output.hidden = lines.length === 0;
    }
    const clash = S.conflicts.find((c) => c && c.port === a.port && Array.isArray(c.agents) &&
      c.agents.includes(a.name));
    r.port.textContent = a.port ? `:${a.port}` : '';
    r.port.title = clash ? `port ${a.port} is shared with ${clash.agents.join(', ')}`
      : (a.port ? `web port ${a.port}` : '');
    r.port.classList.toggle('conflict', Boolean(clash));
    r.sha.textContent = a.deployed_sha ? short(a.deployed_sha) : 'no deploy';
    r.sha.title = a.deployed_sha ? `deployed ${a.deployed_sha}` : '';
    // Nothing to act on before the spawn registered it (its row's status is `spawning`).
    r.actions.hidden = Boolean(a.pseudo) || a.status === 'spawning';
    const running = a.status === 'running' || a.status === 'failing';  // failing: wanted up
    r.buttons.start.disabled = busy || running;
    r.buttons.stop.disabled = busy || !running;
    r.buttons.restart.disabled = busy || !running;
    r.buttons.rebuild.disabled = busy;
    for (const verb of ['destroy', 'purge']) {
      r.buttons[verb].hidden = Boolean(a.is_manager);
      r.buttons[verb].disabled = busy;
    }
  }

  // Failing: the backend says it does not stay up (crash-looping, not starting).
  const failingAgent = (a) => a.status === 'failing';

  function renderAgents() {
    const rows = [...S.agents.values()];
    // An agent being spawned is not an agent yet: show it from its transient state.
    for (const [name, kind] of Object.entries(S.transients)) {
      if (!S.agents.has(name)) {
        rows.push({name, status: 'creating', port: null, deployed_sha: null, transient: kind,
          badges: [], pseudo: true});
      }
    }
    rows.sort((a, b) => (b.is_manager ? 1 : 0) - (a.is_manager ? 1 : 0) ||
      a.name.localeCompare(b.name));
    $('agents-empty').hidden = rows.length > 0;
    $('agents-count').textContent = S.agents.size ? String(S.agents.size) : '';
    keyed($('agents'), rows, (a) => a.name, agentRow, updateAgentRow);
  }

  async function lifecycle(name, verb) {
    await act(`agent:${name}`, `${verb} ${name}`,
      () => api('POST', `/api/agents/${encodeURIComponent(name)}/${verb}`));
  }

  async function destroy(name, purge) {
    const ok = await dialog(purge ? {
      title: `Purge ${name}?`,
      text: `This deletes everything the hive keeps for ${name}: its config history (the ` +
        'proposed and applied repos, with every proposal/deployed/denied/failed tag), its ' +
        'model credentials and its notes. There is no undo.',
      ok: `Purge ${name}`, danger: true,
    } : {
      title: `Destroy ${name}?`,
      text: `This removes ${name}'s container. Its config history, credentials and notes are ` +
        'kept as a tombstone: you can re-spawn it later under the same name, or purge it.',
      ok: `Destroy ${name}`, danger: true,
    });
    if (ok === null) return;
    await act(`agent:${name}`, `${purge ? 'purge' : 'destroy'} ${name}`,
      () => api('POST', `/api/agents/${encodeURIComponent(name)}/destroy`, {purge}));
  }

  // Tombstones --------------------------------------------------------------------------

  function tombstoneRow(t) {
    const r = {};
    r.respawn = h('button', {type: 'button', 'data-action': 'respawn',
      onclick: () => respawn(t.name)}, 're-spawn');
    r.purge = h('button', {type: 'button', class: 'danger', 'data-action': 'purge',
      onclick: () => destroy(t.name, true)}, 'purge');
    r.sha = h('span', {class: 'sha mono'});
    const row = h('div', {class: 'agent tombstone', 'data-tombstone': t.name},
      h('div', {class: 'ident'},
        h('div', {class: 'line1'}, h('span', {class: 'name'}, t.name),
          h('span', {class: 'tag'}, 'tombstone')),
        h('div', {class: 'line2'}, h('span', {class: 'status'}, 'destroyed'), r.sha)),
      h('div', {class: 'actions'}, r.respawn, r.purge));
    row._r = r;
    return row;
  }

  function updateTombstoneRow(row, t) {
    const r = row._r;
    const pending = [...S.approvals.values()].some(
      (a) => a.kind === 'spawn' && a.agent === t.name);
    const busy = S.busy.has(`agent:${t.name}`) || Boolean(S.transients[t.name]);
    r.sha.textContent = t.deployed_sha ? `last deployed ${short(t.deployed_sha)}` : '';
    r.respawn.disabled = busy || pending;
    r.respawn.title = pending ? 'a spawn of this name is already waiting for approval' : '';
    r.purge.disabled = busy;
  }

  function renderTombstones() {
    // A spawn in progress has its dirs already: it is not a tombstone.
    const list = S.tombstones.filter((t) => !S.agents.has(t.name) && !S.transients[t.name]);
    $('tombstones-panel').hidden = list.length === 0;
    keyed($('tombstones'), list, (t) => t.name, tombstoneRow, updateTombstoneRow);
  }

  async function respawn(name) {
    await act(`agent:${name}`, `re-spawn ${name}`, async () => {
      const approval = await api('POST', '/api/requests/spawn',
        {name, description: 're-spawn of a tombstone, from the dashboard'});
      return api('POST', `/api/approvals/${approval.id}/approve`);
    });
  }

  // Approvals ---------------------------------------------------------------------------

  const diffs = new Map();  // approval id -> diff text (fetched once)

  function fillDiff(pre, id) {
    const show = (text) => {
      pre.replaceChildren(...text.split('\n').map((line) => {
        let cls = '';
        if (line.startsWith('diff --git') || line.startsWith('index ') ||
            line.startsWith('+++') || line.startsWith('---') ||
            /^(new|deleted) file mode|^similarity|^rename /.test(line)) cls = 'meta';
        else if (line.startsWith('@@')) cls = 'hunk';
        else if (line.startsWith('… diff truncated:')) cls = 'truncated';
        else if (line.startsWith('+')) cls = 'add';
        else if (line.startsWith('-')) cls = 'del';
        return h('span', {class: cls}, `${line}\n`);
      }));
    };
    if (diffs.has(id)) {
      show(diffs.get(id));
      return;
    }
    pre.textContent = 'loading the diff…';
    api('GET', `/api/approvals/${id}`).then((detail) => {
      diffs.set(id, detail.diff);
      show(detail.diff);
    }).catch((err) => { pre.textContent = `could not load the diff: ${err.message}`; });
  }

  function approvalHead(a, r) {
    const what = [h('span', {class: 'id mono'}, `#${a.id}`),
      h('span', {class: `kind ${a.kind}`}, a.kind),
      h('span', {class: 'name'}, a.agent)];
    if (a.kind === 'apply') what.push(h('span', {class: 'sha mono', title: a.sha || ''},
      `@ ${short(a.sha)}`));
    what.push(r.when);
    return what;
  }

  function approvalCard(a) {
    const r = {};
    r.when = timeEl(a.created_at);
    r.status = h('span', {class: 'pill pulse'});
    r.approve = h('button', {type: 'button', class: 'primary', 'data-action': 'approve',
      onclick: () => approve(a.id)}, 'Approve');
    r.deny = h('button', {type: 'button', class: 'warn', 'data-action': 'deny',
      onclick: () => deny(a.id)}, 'Deny');
    const desc = a.description
      ? h('p', {class: 'desc'}, a.description)
      : h('p', {class: 'desc none'}, 'no description');
    let body = null;
    if (a.kind === 'apply') {
      r.diff = h('pre', {class: 'diff'});
      fillDiff(r.diff, a.id);
      body = r.diff;
    } else {
      const kept = S.tombstones.some((t) => t.name === a.agent);
      body = h('p', {class: 'spawn-note'}, kept
        ? `re-spawns ${a.agent} from its tombstone (its config history and credentials)`
        : `creates a new agent ${a.agent} with the backend's initial config`);
    }
    const card = h('article', {class: 'approval', 'data-approval': a.id},
      h('header', {}, h('div', {class: 'what'}, approvalHead(a, r), r.status),
        h('div', {class: 'actions'}, r.approve, r.deny)),
      desc, body);
    card._r = r;
    return card;
  }

  function updateApprovalCard(card, a) {
    const r = card._r;
    const busy = S.busy.has(`approval:${a.id}`);
    const running = a.status === 'running';
    card.dataset.status = a.status;
    r.status.hidden = !running;
    r.status.textContent = running ? (a.kind === 'spawn' ? '◐ spawning…' : '◐ deploying…') : '';
    r.approve.disabled = busy || a.status !== 'pending';
    r.deny.disabled = busy || a.status !== 'pending';
    r.approve.hidden = running;
    r.deny.hidden = running;
  }

  function renderApprovals() {
    const list = [...S.approvals.values()].sort((a, b) => a.id - b.id);
    $('approvals-empty').hidden = list.length > 0;
    $('approvals-count').textContent = list.length ? String(list.length) : '';
    keyed($('approvals'), list, (a) => a.id, approvalCard, updateApprovalCard);
  }

  async function approve(id) {
    await act(`approval:${id}`, `approve #${id}`,
      () => api('POST', `/api/approvals/${id}/approve`));
  }

  async function deny(id) {
    const a = S.approvals.get(id);
    const note = await dialog({
      title: `Deny #${id}${a ? ` (${a.kind} ${a.agent})` : ''}?`,
      text: 'Reason (optional): sent to the manager' +
        (a && a.kind === 'apply' ? ` and kept in the denied/${id} tag.` : '.'),
      input: true, ok: 'Deny', danger: true,
    });
    if (note === null) return;
    await act(`approval:${id}`, `deny #${id}`,
      () => api('POST', `/api/approvals/${id}/deny`, {note}));
  }

  // Recently resolved --------------------------------------------------------------------

  function resolvedItem(a) {
    const r = {};
    r.status = h('span', {class: 'outcome'});
    r.tag = h('span', {class: 'tag mono'});
    r.when = timeEl(a.resolved_at || a.created_at);
    r.note = h('pre', {class: 'note'});
    r.diff = h('pre', {class: 'diff', hidden: true});
    r.toggle = a.kind === 'apply' ? h('button', {type: 'button', class: 'link',
      onclick: () => {
        r.diff.hidden = !r.diff.hidden;
        r.toggle.textContent = r.diff.hidden ? 'show diff' : 'hide diff';
        if (!r.diff.hidden && !r.diff.childNodes.length) fillDiff(r.diff, a.id);
      }}, 'show diff') : null;
    const item = h('article', {class: 'resolved', 'data-approval': a.id},
      h('header', {}, h('div', {class: 'what'}, approvalHead(a, {when: r.when}), r.status,
        r.tag), r.toggle),
      r.note, r.diff);
    item._r = r;
    return item;
  }

  function updateResolvedItem(item, a) {
    const r = item._r;
    item.dataset.status = a.status;
    r.status.textContent = a.status;
    r.status.className = `outcome ${a.status}`;
    r.tag.textContent = a.tag || '';
    r.tag.hidden = !a.tag;
    r.tag.title = a.tag ? `git show ${a.tag} in the applied repo` : '';
    r.note.hidden = !a.note;
    r.note.textContent = a.note || '';
    r.note.className = `note ${a.status}`;
  }

  function renderResolved() {
    const list = [...S.resolved.values()]
      .sort((a, b) => (b.resolved_at || 0) - (a.resolved_at || 0) || b.id - a.id)
      .slice(0, RESOLVED);
    $('resolved-empty').hidden = list.length > 0;
    keyed($('resolved'), list, (a) => a.id, resolvedItem, updateResolvedItem);
  }

  // Answered questions (history) -----------------------------------------------------------

  function answeredItem(q) {
    const r = {};
    r.outcome = h('span', {class: 'outcome'});
    r.answer = h('p', {class: 'answer'});
    r.when = timeEl(q.resolved_at || q.created_at);
    const item = h('article', {class: 'resolved answered', 'data-question': q.id},
      h('header', {}, h('div', {class: 'what'}, h('span', {class: 'id mono'}, `#${q.id}`),
        h('span', {class: 'name'}, q.asker), ' asked', r.when), r.outcome),
      h('p', {class: 'text'}, q.question), r.answer);
    item._r = r;
    return item;
  }

  function updateAnsweredItem(item, q) {
    const r = item._r;
    r.outcome.textContent = q.status;
    r.outcome.className = `outcome ${q.status === 'answered' ? 'approved' : 'denied'}`;
    const by = q.answered_by ? ` (${q.answered_by === 'operator' ? 'you' : q.answered_by})` : '';
    r.answer.textContent = q.answer ? `→ ${q.answer}${by}`
      : (q.status === 'expired' ? 'no answer before its deadline' : `withdrawn${by}`);
    r.answer.classList.toggle('none', !q.answer);
  }

  function renderAnswered() {
    const list = [...S.answered.values()]
      .sort((a, b) => (b.resolved_at || 0) - (a.resolved_at || 0) || b.id - a.id)
      .slice(0, ANSWERED);
    $('answered-panel').hidden = list.length === 0;
    keyed($('answered'), list, (q) => q.id, answeredItem, updateAnsweredItem);
  }

  // What waits for the operator: the count in the header and the tab's title.
  function renderAttention() {
    const parts = [];
    const pending = [...S.approvals.values()].filter((a) => a.status === 'pending').length;
    const failing = [...S.agents.values()].filter(failingAgent).map((a) => a.name);
    if (pending) parts.push(`${pending} approval${pending > 1 ? 's' : ''}`);
    if (S.questions.size) parts.push(`${S.questions.size} question${S.questions.size > 1 ? 's' : ''}`);
    if (failing.length) parts.push(`${failing.length} failing (${failing.join(', ')})`);
    if (S.unread.size) parts.push(`${S.unread.size} unread`);
    const waiting = pending + S.questions.size + failing.length + S.unread.size;
    document.title = waiting ? `(${waiting}) hivekit` : 'hivekit';
    const el = $('attention');
    el.hidden = waiting === 0;
    el.textContent = waiting ? `${waiting} for you` : '';
    el.title = parts.join(' · ');
    el.dataset.count = String(waiting);
  }

  // Questions ---------------------------------------------------------------------------

  function questionCard(q) {
    const r = {};
    const name = `q${q.id}`;
    let choices = null;
    let text = null;
    if (q.options && q.options.length) {
      choices = h('div', {class: 'choices'}, q.options.map((opt) => h('label', {},
        h('input', {type: q.multi ? 'checkbox' : 'radio', name, value: opt}), ' ', opt)));
    } else {
      text = h('textarea', {rows: 2, placeholder: 'your answer…', 'aria-label': 'answer'});
    }
    r.button = h('button', {type: 'submit', class: 'primary'}, 'Answer');
    const form = h('form', {class: 'question', 'data-question': q.id},
      h('header', {},
        h('div', {class: 'what'}, h('span', {class: 'name'}, q.asker), ' asks',
          q.multi ? h('span', {class: 'hint'}, '(choose any)') : null, timeEl(q.created_at)),
        q.deadline ? h('span', {class: 'deadline', 'data-deadline': q.deadline},
          countdown(q.deadline)) : null),
      h('p', {class: 'text'}, q.question),
      choices, text, h('div', {class: 'actions'}, r.button));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      let answer;
      if (choices) {
        const picked = [...choices.querySelectorAll('input:checked')].map((i) => i.value);
        if (!picked.length) {
          notice(`question #${q.id}: pick an option first`);
          return;
        }
        answer = q.multi ? picked : picked[0];
      } else {
        answer = text.value.trim();
        if (!answer) {
          notice(`question #${q.id}: write an answer first`);
          return;
        }
      }
      act(`question:${q.id}`, `answer #${q.id}`,
        () => api('POST', `/api/questions/${q.id}/answer`, {answer}));
    });
    form._r = r;
    return form;
  }

  function updateQuestionCard(card, q) {
    card._r.button.disabled = S.busy.has(`question:${q.id}`) ||
      card.classList.contains('expired');
  }

  function renderQuestions() {
    const list = [...S.questions.values()].sort((a, b) => a.id - b.id);
    $('questions-panel').hidden = list.length === 0;
    $('questions-count').textContent = list.length ? String(list.length) : '';
    keyed($('questions'), list, (q) => q.id, questionCard, updateQuestionCard);
  }

  // Live log and broker traffic ----------------------------------------------------------

  // One line per event, in seq order, each once (history and live events overlap). Lines
  // of an earlier daemon (whose seqs started again) stay above, without their seq.
  let logBoot = 0;
  function addLog(seq, at, agent, line, cls) {
    const log = $('log');
    const key = `${logBoot}:${seq}`;
    if (log.querySelector(`[data-line="${CSS.escape(key)}"]`)) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
    const el = h('div', {class: `line ${cls}`, 'data-line': key, 'data-seq': seq},
      h('span', {class: 'time'}, clock(at)), h('span', {class: 'who'}, agent),
      h('span', {class: 'text'}, line));
    let before = null;
    for (let node = log.lastElementChild; node; node = node.previousElementSibling) {
      if (!node.dataset.line.startsWith(`${logBoot}:`) || Number(node.dataset.seq) < seq) break;
      before = node;
    }
    log.insertBefore(el, before);
    while (log.childElementCount > LOG_LINES) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  // The live log starts with its recent history (once per daemon): what a page opened now
  // would otherwise miss.
  let logLoadedBoot = null;
  async function loadLog() {
    if (logLoadedBoot === S.boot) return;
    logLoadedBoot = S.boot;
    try {
      for (const e of await api('GET', `/api/logs?limit=${LOG_LINES}`)) {
        const line = logLine(e.event.type, e.event);
        if (line) addLog(e.seq, e.at, ...line);
      }
    } catch (_) {
      logLoadedBoot = null;  // an older daemon, or a failure: live lines only
    }
  }

  // Newest first, each message once (history and live events may overlap). A message to the
  // operator is unread until marked read (here, by `hivekit ack`, or in another tab).
  function addMessage(m) {
    const list = $('messages');
    const id = Number(m.id);
    let before = null;
    for (const li of list.children) {
      const other = Number(li.dataset.message);
      if (other === id) return;
      if (other < id) {
        before = li;
        break;
      }
    }
    const system = m.sender === 'system';
    const toYou = m.recipient === 'operator';
    if (toYou && !m.acked_at) S.unread.add(id);
    const read = toYou ? h('button', {type: 'button', class: 'link read', 'data-action': 'read',
      onclick: () => markRead([id])}, 'mark read') : null;
    list.insertBefore(h('li', {class: `message${system ? ' system' : ''}${toYou ? ' to-you' : ''}`,
      'data-message': id},
    h('div', {class: 'route'}, h('span', {class: 'name'}, m.sender), h('span', {}, '→'),
      h('span', {class: 'name'}, toYou ? 'you' : m.recipient), timeEl(m.created_at), read),
    messageBody(m)), before);
    while (list.childElementCount > MESSAGES) list.lastElementChild.remove();
    $('messages-empty').hidden = true;
    render();
  }

  function renderUnread() {
    for (const li of $('messages').children) {
      const id = Number(li.dataset.message);
      const unread = S.unread.has(id);
      li.classList.toggle('unread', unread);
      const button = li.querySelector('button.read');
      if (button) {
        button.hidden = !unread;
        button.disabled = S.busy.has(`read:${id}`);
      }
    }
    $('unread-count').textContent = S.unread.size ? String(S.unread.size) : '';
    $('read-all').hidden = S.unread.size === 0;
  }

  async function markRead(ids) {
    const key = ids.length === 1 ? `read:${ids[0]}` : 'read:all';
    await act(key, 'mark read', async () => {
      const body = ids.length ? {ids} : {all: true};
      await api('POST', '/api/agents/operator/inbox/ack', body);
      // The messages_read event says so too (and tells the other tabs).
      if (ids.length) for (const id of ids) S.unread.delete(id);
      else S.unread.clear();
    });
  }
  $('read-all').addEventListener('click', () => markRead([]));

  // A system message carries a helper event (JSON with a type): shown as its fields.
  function messageBody(m) {
    let ev = null;
    if (m.sender === 'system') {
      try {
        ev = JSON.parse(m.body);
      } catch (_) {
        ev = null;
      }
    }
    if (!ev || typeof ev !== 'object' || typeof ev.type !== 'string') {
      return h('div', {class: 'body'}, m.body);
    }
    const fields = Object.entries(ev)
      .filter(([k, v]) => k !== 'type' && v !== null && v !== undefined)
      .map(([k, v]) => {
        let text = typeof v === 'string' ? v : JSON.stringify(v);
        if (/^[0-9a-f]{40}$/.test(text)) text = short(text);
        return h('span', {class: 'field'}, h('span', {class: 'key'}, k), ' ', text);
      });
    return h('div', {class: 'body helper', title: JSON.stringify(ev, null, 2)},
      h('span', {class: 'event'}, ev.type.replace(/_/g, ' ')), fields);
  }

  // The feed starts with each inbox's recent messages, the operator's too (once per page
  // load); events add the rest.
  let historyLoaded = false;
  async function loadHistory() {
    if (historyLoaded) return;
    historyLoaded = true;
    for (const name of ['operator', ...S.agents.keys()]) {
      try {
        const messages = await api('GET', `/api/agents/${encodeURIComponent(name)}/inbox?limit=20`);
        for (const m of messages) addMessage(m);
      } catch (_) {
        // an agent that went away meanwhile: its history is not needed
      }
    }
  }

  function renderCompose() {
    const select = $('compose-to');
    const names = [...S.agents.keys()].sort();
    const current = select.value;
    if ([...select.options].map((o) => o.value).join() !== names.join()) {
      select.replaceChildren(...names.map((n) => h('option', {value: n}, n)));
      if (names.includes(current)) select.value = current;
    }
  }

  $('compose').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = $('compose-to').value;
    const body = $('compose-body').value;
    if (!to || !body.trim()) return;
    act('compose', `message to ${to}`, async () => {
      await api('POST', '/api/messages', {to, body});
      $('compose-body').value = '';
    });
  });

  // The dialog: a confirmation, or a text prompt. Resolves to the text ('' when none was
  // asked for), or null when cancelled.
  function dialog({title, text, input = false, ok = 'OK', danger = false}) {
    const dlg = $('dialog');
    $('dialog-title').textContent = title;
    $('dialog-text').textContent = text;
    const field = $('dialog-input');
    field.hidden = !input;
    field.value = '';
    $('dialog-ok').textContent = ok;
    $('dialog-ok').className = danger ? 'danger' : 'primary';
    return new Promise((resolve) => {
      const done = (value) => {
        $('dialog-form').onsubmit = null;
        $('dialog-cancel').onclick = null;
        dlg.onclose = null;
        if (dlg.open) dlg.close();
        resolve(value);
      };
      $('dialog-form').onsubmit = (ev) => {
        ev.preventDefault();
        done(input ? field.value : '');
      };
      $('dialog-cancel').onclick = () => done(null);
      dlg.onclose = () => done(null);
      dlg.showModal();
      (input ? field : $('dialog-cancel')).focus();
    });
  }

  setInterval(tick, 1000);
  stream();
})();
