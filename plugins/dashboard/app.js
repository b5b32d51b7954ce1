// The hivekit dashboard: a snapshot of GET /api/state, kept live by GET /api/events (SSE).
//
// Consistency: the snapshot's seq is read before its state is gathered, so the page applies
// only events with a larger seq, in order. A gap in seq (events lost by a slow stream), a
// `resync` frame (Last-Event-ID too old), another daemon's `boot`, or a structural change
// (an agent appeared or went away) reloads the snapshot; events arriving meanwhile wait and
// are applied after it. The stream reconnects by itself, sending Last-Event-ID.
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

  const S = {
    seq: null,            // seq of the last state applied; null before the first snapshot
    boot: null,           // the daemon's life the seq belongs to
    agents: new Map(),    // name -> agent view
    transients: {},       // name -> kind (also for agents being spawned)
    tombstones: [],
    approvals: new Map(), // id -> approval (pending or running)
    resolved: new Map(),  // id -> approval (terminal)
    questions: new Map(), // id -> pending operator question
    conflicts: [],
    busy: new Set(),      // keys of actions this tab has in flight
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
        const [state, recent] = await Promise.all([
          api('GET', '/api/state'),
          api('GET', `/api/approvals?all=true&limit=${RESOLVED}`),
        ]);
        load(state, recent);
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

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(resnapshot, 150);
  }

  function load(state, recent) {
    S.seq = state.seq;
    document.body.dataset.seq = String(state.seq);
    S.agents = new Map(state.agents.map((a) => [a.name, a]));
    S.transients = {...state.transients};
    S.tombstones = state.tombstones || [];
    S.approvals = new Map(state.approvals.map((a) => [a.id, a]));
    S.questions = new Map((state.questions || [])
      .filter((q) => q.status === 'pending').map((q) => [q.id, q]));
    S.conflicts = state.port_conflicts || [];
    S.resolved = new Map();
    for (const a of recent) if (isTerminal(a)) S.resolved.set(a.id, a);
    render();
    loadHistory();
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
          S.resolved.set(a.id, a);
          refreshSoon();  // the agent's deployed sha (or its existence) changed with it
        } else {
          S.approvals.set(a.id, a);
        }
        break;
      }
      case 'question_added':
      case 'question_resolved': {
        const q = d.question;
        if (q.target !== 'operator') break;
        if (q.status === 'pending') S.questions.set(q.id, q);
        else S.questions.delete(q.id);
        break;
      }
      case 'agent_changed':
        if (d.agent) S.agents.set(d.name, d.agent);
        else refreshSoon();  // added or removed: the snapshot knows (and about tombstones)
        break;
      case 'transient': {
        if (d.transient) S.transients[d.name] = d.transient;
        else delete S.transients[d.name];
        const agent = S.agents.get(d.name);
        if (agent) S.agents.set(d.name, {...agent, transient: d.transient});
        if (!d.transient) refreshSoon();
        break;
      }
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
    switch (type) {
      case 'message':
        addMessage(d.message);
        break;
      case 'log':
        addLog(d.agent, d.line, d.stream === 'stderr' ? 'stderr' : '');
        break;
      case 'deploy_step':
        addLog(d.agent, `── approval #${d.approval_id}: ${d.step}`, 'step');
        break;
      case 'approval_changed': {
        const a = d.approval;
        if (isTerminal(a)) {
          addLog(a.agent, `── approval #${a.id}: ${a.status}${a.tag ? ` (${a.tag})` : ''}`,
            a.status === 'failed' ? 'stderr' : 'step');
        }
        break;
      }
      default:
        break;
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
      const reborn = S.boot !== null && payload.boot !== S.boot;
      if (reborn) {  // another daemon: its seqs start again
        S.seq = null;
        queued = [];
        lastEventId = '';
        feedSeq = 0;
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

  // --- rendering --------------------------------------------------------------------------

  let renderQueued = false;
  function render() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => {
      renderQueued = false;
      renderBanner();
      renderOps();
      renderQuestions();
      renderApprovals();
      renderAgents();
      renderTombstones();
      renderResolved();
      renderCompose();
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
      : 'output of lifecycle operations';
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
    const row = h('div', {class: 'agent', 'data-agent': a.name},
      h('div', {class: 'ident'},
        h('div', {class: 'line1'}, h('span', {class: 'dot'}), r.name, r.manager, r.pill,
          r.badges),
        h('div', {class: 'line2'}, r.status, r.port, r.sha)),
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
    r.status.textContent = a.status;
    r.status.className = `status ${a.status}`;
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
    const running = a.status === 'running';
    r.buttons.start.disabled = busy || running;
    r.buttons.stop.disabled = busy || !running;
    r.buttons.restart.disabled = busy || !running;
    r.buttons.rebuild.disabled = busy;
    for (const verb of ['destroy', 'purge']) {
      r.buttons[verb].hidden = Boolean(a.is_manager);
      r.buttons[verb].disabled = busy;
    }
  }

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
    const waiting = list.filter((a) => a.status === 'pending').length + S.questions.size;
    document.title = waiting ? `(${waiting}) hivekit` : 'hivekit';
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

  function addLog(agent, line, cls) {
    const log = $('log');
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
    log.append(h('div', {class: `line ${cls}`},
      h('span', {class: 'time'}, clock()), h('span', {class: 'who'}, agent),
      h('span', {class: 'text'}, line)));
    while (log.childElementCount > LOG_LINES) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  // Newest first, each message once (history and live events may overlap).
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
    list.insertBefore(h('li', {class: `message${system ? ' system' : ''}`, 'data-message': id},
      h('div', {class: 'route'}, h('span', {class: 'name'}, m.sender), h('span', {}, '→'),
        h('span', {class: 'name'}, m.recipient), timeEl(m.created_at)),
      messageBody(m)), before);
    while (list.childElementCount > MESSAGES) list.lastElementChild.remove();
    $('messages-empty').hidden = true;
  }

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

  // The feed starts with each agent's recent inbox (once per page load); events add the rest.
  let historyLoaded = false;
  async function loadHistory() {
    if (historyLoaded) return;
    historyLoaded = true;
    for (const name of S.agents.keys()) {
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
