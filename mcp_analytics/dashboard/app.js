/* MCP analytics dashboard: vanilla JS, hand-drawn SVG, no dependencies.
 *
 * Every value shown comes from agents and is untrusted: it is written with textContent,
 * setAttribute or SVG text nodes, never parsed as HTML.
 *
 * Test hooks: each panel has data-panel="<name>"; values sit in elements with
 * data-field="<column>" (data-value holds the raw value); table rows are <tr data-row>.
 * <body data-loaded="true"> once every panel has loaded; data-error="<message>" when a request failed.
 * Filters (the API's slices) live in the fragment (#client=Cursor&tool=a,b); a value shown in a row is a link
 * (a.slice, data-filter="<name>") that adds it, and each active filter is a chip (data-filter-chip) that removes it.
 */
'use strict';

(() => {
  const RANGES = ['15m', '1h', '24h', '7d', '30d', 'all'];
  const DEFAULT_RANGE = '24h';
  const PANELS = ['summary', 'timeseries', 'latency', 'tools', 'failures', 'clients', 'users',
    'methods', 'prompts', 'cost', 'unused_tools', 'sessions'];
  const DIMENSIONS = ['tool', 'client', 'user', 'server', 'method', 'origin'];
  const LIMITS = { tools: 15, clients: 10, users: 10, prompts: 15, cost: 15, unused_tools: 15, sessions: 50, latency: 15 };
  const SESSION_LIMIT = 1000;
  const STORAGE_KEY = 'mcp-analytics.api-key';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#76b7b2', '#b07aa1', '#edc948', '#9c755f', '#bab0ac'];
  const FAMILY_COLORS = { requests: '#4e79a7', capabilities: '#76b7b2', custom: '#b07aa1', auth: '#e15759' };
  const MAX_SERIES = 7;
  const INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const state = { key: null, last: DEFAULT_RANGE, by: 'method', session: null, filters: {} };
  let generation = 0;
  let controller = null;
  let lastTimeseries = null;

  /* ---------- DOM helpers (text only) ---------- */

  function el(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function sv(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function build(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name === 'class') node.setAttribute('class', value);
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function panelBody(name) {
    return document.querySelector(`[data-panel="${name}"] .body`);
  }

  /* ---------- formatting ---------- */

  const fmt = {
    int: (v) => (v === null || v === undefined ? '–' : INT.format(v)),
    ms: (v) => {
      if (v === null || v === undefined) return '–';
      if (v < 10) return v.toFixed(2);
      if (v < 1000) return v.toFixed(1);
      return INT.format(Math.round(v));
    },
    pct: (v) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)}%`),
    ratio: (v) => (v === null || v === undefined ? '–' : (Math.round(v * 100) / 100).toString()),
    bytes: (v) => {
      if (v === null || v === undefined) return '–';
      const units = ['B', 'KB', 'MB', 'GB', 'TB'];
      let value = v;
      let unit = 0;
      while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
      return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
    },
    seconds: (v) => {
      if (v === null || v === undefined) return '–';
      if (v < 60) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
      if (v < 3600) return `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`;
      return `${Math.floor(v / 3600)} h ${Math.round((v % 3600) / 60)} min`;
    },
    text: (v) => (v === null || v === undefined || v === '' ? '–' : String(v)),
    time: (v) => {
      if (!v) return '–';
      const date = new Date(v);
      if (Number.isNaN(date.getTime())) return String(v);
      const today = new Date();
      const pad = (n) => String(n).padStart(2, '0');
      const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
      if (date.toDateString() === today.toDateString()) return clock;
      return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock.slice(0, 5)}`;
    },
  };

  /* A cell (or any element) holding one value: formatted text, the raw value in data-value. */
  function field(tag, name, value, format, attrs) {
    const raw = value === null || value === undefined ? '' : String(value);
    const node = el(tag, { 'data-field': name, 'data-value': raw, ...(attrs || {}) }, (format || fmt.text)(value));
    if (format === fmt.time && value) node.setAttribute('title', String(value));
    return node;
  }

  /* ---------- the URL fragment: #key=…&last=…&by=…&session=…&<filter>=a,b ---------- */

  function parseFragment() {
    const found = {};
    for (const part of location.hash.replace(/^#/, '').split('&')) {
      if (!part) continue;
      const at = part.indexOf('=');
      const name = at < 0 ? part : part.slice(0, at);
      let value = at < 0 ? '' : part.slice(at + 1);
      try { value = decodeURIComponent(value); } catch (error) { /* keep it as written */ }
      found[name] = value;
    }
    return found;
  }

  function fragment(overrides) {
    const next = { last: state.last, by: state.by, session: state.session, filters: state.filters, ...(overrides || {}) };
    const parts = [`last=${encodeURIComponent(next.last)}`];
    if (next.by && next.by !== 'method') parts.push(`by=${encodeURIComponent(next.by)}`);
    if (next.session) parts.push(`session=${encodeURIComponent(next.session)}`);
    for (const [name, values] of Object.entries(filterQuery(next.filters))) parts.push(`${name}=${encodeURIComponent(values)}`);
    return `#${parts.join('&')}`;
  }

  /* Filters as the API takes them: {client: 'a,b'}; values never contain a comma (the API splits on it). */
  function filterQuery(filters) {
    const found = {};
    for (const name of DIMENSIONS) {
      if (filters[name] && filters[name].length) found[name] = filters[name].join(',');
    }
    return found;
  }

  function withFilter(name, value) {
    const values = state.filters[name] || [];
    return { ...state.filters, [name]: values.includes(value) ? values : [...values, value] };
  }

  function withoutFilter(name, value) {
    return { ...state.filters, [name]: (state.filters[name] || []).filter((item) => item !== value) };
  }

  /* A value shown in a row, as a link to the same view sliced by it (``shown``: its text or node; data from
   * agents, so text only). None for no value, or one the API could not take as one value. */
  function sliceLink(name, value, shown) {
    if (value === null || value === undefined || value === '' || String(value).includes(',')) return null;
    return el('a', { class: 'slice', href: fragment({ filters: withFilter(name, String(value)), session: null }),
      'data-filter': name, title: `only the events of ${name} ${value}` }, shown === undefined ? String(value) : shown);
  }

  function readState() {
    const found = parseFragment();
    if (found.key) {
      state.key = found.key;
      storeKey(found.key);
    } else if (!state.key) {
      state.key = loadKey();
    }
    state.last = RANGES.includes(found.last) || /^\d{1,6}[mhd]$/.test(found.last || '') ? found.last : DEFAULT_RANGE;
    state.by = found.by === 'family' ? 'family' : 'method';
    state.session = found.session || null;
    state.filters = {};
    for (const name of DIMENSIONS) {
      const values = (found[name] || '').split(',').map((value) => value.trim()).filter(Boolean);
      if (values.length) state.filters[name] = [...new Set(values)];
    }
    if (found.key) {
      // The key is kept in localStorage, not in the address bar, history or bookmarks.
      history.replaceState(null, '', location.pathname + location.search + fragment());
    }
  }

  function storeKey(key) {
    try { localStorage.setItem(STORAGE_KEY, key); } catch (error) { /* storage disabled: keep it in memory */ }
  }

  function loadKey() {
    try { return localStorage.getItem(STORAGE_KEY); } catch (error) { return null; }
  }

  function forgetKey() {
    try { localStorage.removeItem(STORAGE_KEY); } catch (error) { /* nothing stored */ }
    state.key = null;
  }

  /* ---------- API ---------- */

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function query(name, params, signal) {
    const search = new URLSearchParams({ last: state.last, ...filterQuery(state.filters), ...params });
    let response;
    try {
      response = await fetch(`/v1/panels/${encodeURIComponent(name)}?${search}`, {
        headers: { Authorization: `Bearer ${state.key}`, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
        signal,
      });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError(0, `the server could not be reached (${error.message})`);
    }
    let answer = null;
    try { answer = await response.json(); } catch (error) { /* not JSON */ }
    if (!response.ok) {
      const detail = answer && answer.detail;
      let message = response.statusText || 'request failed';
      if (detail && typeof detail.message === 'string') message = detail.message;
      else if (Array.isArray(detail) && detail[0] && detail[0].msg) message = detail[0].msg;
      throw new ApiError(response.status, `${response.status}: ${message}`);
    }
    if (!answer || !Array.isArray(answer.rows)) throw new ApiError(response.status, 'the answer has no rows');
    return answer;
  }

  /* ---------- loading ---------- */

  function setError(message) {
    body.dataset.error = message;
    const banner = $('banner');
    banner.textContent = message;
    banner.hidden = false;
  }

  function clearError() {
    delete body.dataset.error;
    $('banner').hidden = true;
    $('banner').textContent = '';
  }

  function showKeyForm(message) {
    $('keyform').hidden = false;
    $('overview').hidden = true;
    $('session-view').hidden = true;
    if (message) setError(message);
    $('keyform-input').focus();
  }

  function renderChrome() {
    const nav = clear($('ranges'));
    for (const range of RANGES) {
      nav.appendChild(el('a', {
        href: fragment({ last: range, session: null }),
        class: range === state.last ? 'active' : null,
        'aria-current': range === state.last ? 'true' : null,
        'data-range': range,
      }, range === 'all' ? 'All' : range));
    }
    for (const button of document.querySelectorAll('#by-toggle button')) {
      button.classList.toggle('active', button.dataset.by === state.by);
      button.setAttribute('aria-pressed', String(button.dataset.by === state.by));
    }
    $('session-back').setAttribute('href', fragment({ session: null }));
    const chips = clear($('filters'));
    const active = DIMENSIONS.flatMap((name) => (state.filters[name] || []).map((value) => [name, value]));
    chips.hidden = !active.length;
    for (const [name, value] of active) {
      chips.appendChild(el('a', { class: 'chip', href: fragment({ filters: withoutFilter(name, value) }),
        'data-filter-chip': name, 'data-value': value, title: `remove the filter ${name} ${value}` },
        el('span', { class: 'sub' }, `${name} `), value, el('span', { class: 'x', 'aria-hidden': 'true' }, ' ×')));
    }
    if (active.length) chips.appendChild(el('a', { class: 'clear', href: fragment({ filters: {} }), id: 'filters-clear' }, 'Clear filters'));
  }

  function showWindow(answer) {
    $('project').hidden = false;
    $('project').textContent = answer.project;
    $('window').textContent = `${fmt.time(answer.from)} → ${fmt.time(answer.to)}`;
    $('window').setAttribute('title', `${answer.from} → ${answer.to} (UTC)`);
  }

  function clearPanels() {
    clear($('summary-stats'));
    for (const name of PANELS) {
      const target = panelBody(name);
      if (target) clear(target);
    }
    clear(panelBody('session'));
    clear($('session-facts'));
  }

  async function load() {
    renderChrome();
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    const mine = ++generation;
    body.dataset.loaded = 'false';
    clearError();
    if (!state.key) {
      clearPanels();
      showKeyForm();
      return;
    }
    $('keyform').hidden = true;
    body.classList.add('loading');
    const jobs = state.session ? [loadSession(signal)] : PANELS.map((name) => loadPanel(name, signal));
    $('overview').hidden = Boolean(state.session);
    $('session-view').hidden = !state.session;
    const results = await Promise.allSettled(jobs);
    if (mine !== generation) return; // a newer load took over
    body.classList.remove('loading');
    const failed = results.filter((result) => result.status === 'rejected' && result.reason.name !== 'AbortError');
    if (!failed.length) {
      body.dataset.loaded = 'true';
      return;
    }
    const reason = failed[0].reason;
    if (reason.status === 401 || reason.status === 403) {
      forgetKey(); // a refused key is not kept: the next visit asks for one
      clearPanels();
      $('project').hidden = true;
      $('window').textContent = '';
      showKeyForm(`The API key was refused (${reason.message}). Enter the project's key.`);
    } else {
      setError(`Could not load ${failed.length === 1 ? 'a panel' : `${failed.length} panels`}: ${reason.message}`);
    }
  }

  async function loadPanel(name, signal) {
    const target = panelBody(name);
    const params = { limit: String(LIMITS[name] || 100) };
    if (name === 'timeseries') params.by = state.by;
    try {
      const answer = await query(name, params, signal);
      if (signal.aborted) return;
      if (name === 'summary') showWindow(answer);
      RENDER[name](answer, target);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      const holder = name === 'summary' ? $('summary-stats') : target;
      clear(holder).appendChild(el('p', { class: 'panel-error' }, `Could not load: ${error.message}`));
      throw error;
    }
  }

  /* ---------- panels ---------- */

  function empty(message) {
    return el('p', { class: 'empty' }, message);
  }

  /* columns: [{field, label, format, num, bar}]; bar draws the value against the column's max. */
  function table(columns, rows, options) {
    const opts = options || {};
    const maxima = {};
    for (const column of columns) {
      if (column.bar) maxima[column.field] = Math.max(0, ...rows.map((row) => Number(row[column.field]) || 0));
    }
    return el('table', { class: `data ${opts.class || ''}` },
      el('thead', null, el('tr', null, columns.map((column) =>
        el('th', { class: column.num ? 'num' : null, scope: 'col', title: column.title || null }, column.label)))),
      el('tbody', null, rows.map((row) => {
        const tr = el('tr', { 'data-row': true, ...(opts.rowAttrs ? opts.rowAttrs(row) : {}) });
        for (const column of columns) {
          if (column.render) {
            tr.appendChild(column.render(row));
            continue;
          }
          const cell = field('td', column.field, row[column.field], column.format, { class: column.num ? 'num' : null });
          const link = column.filter && sliceLink(column.filter, column.filterValue ? column.filterValue(row) : row[column.field], cell.textContent);
          if (link) clear(cell).appendChild(link);
          if (column.bar && maxima[column.field] > 0) {
            const fill = el('span', { class: `bar ${column.barClass ? column.barClass(row) : ''}` });
            fill.style.width = `${Math.max(1, (100 * (Number(row[column.field]) || 0)) / maxima[column.field])}%`;
            cell.classList.add('with-bar');
            cell.prepend(el('span', { class: 'track', 'aria-hidden': 'true' }, fill));
          }
          tr.appendChild(cell);
        }
        return tr;
      })));
  }

  function stat(name, label, value, format, extra) {
    return el('div', { class: `stat ${extra || ''}` },
      el('div', { class: 'label' }, label),
      field('div', name, value, format, { class: 'value' }));
  }

  const RENDER = {
    summary(answer) {
      const row = answer.rows[0] || {};
      const target = clear($('summary-stats'));
      target.append(
        stat('events', 'Events', row.events, fmt.int),
        stat('failures', 'Failures', row.failures, fmt.int, row.failures ? 'bad' : ''),
        stat('success_rate', 'Success rate', row.success_rate, fmt.pct),
        stat('tool_calls', 'Tool calls', row.tool_calls, fmt.int),
        stat('sessions', 'Sessions', row.sessions, fmt.int),
        stat('users', 'Users', row.users, fmt.int),
        stat('clients', 'Clients', row.clients, fmt.int),
      );
    },

    timeseries(answer, target) {
      lastTimeseries = answer;
      drawTimeseries(answer, target);
    },

    latency(answer, target) {
      clear(target);
      const overall = answer.rows.find((row) => row.tool === null) || {};
      const tools = answer.rows.filter((row) => row.tool !== null);
      target.appendChild(el('div', { class: 'stats compact', 'data-overall': 'true' },
        stat('calls', 'Requests', overall.calls, fmt.int),
        stat('p50_ms', 'p50', overall.p50_ms, (v) => `${fmt.ms(v)} ms`),
        stat('p95_ms', 'p95', overall.p95_ms, (v) => `${fmt.ms(v)} ms`),
        stat('p99_ms', 'p99', overall.p99_ms, (v) => `${fmt.ms(v)} ms`),
        stat('own_p95_ms', 'Own p95', overall.own_p95_ms, (v) => `${fmt.ms(v)} ms`),
        stat('upstream_p95_ms', 'Upstream p95', overall.upstream_p95_ms, (v) => `${fmt.ms(v)} ms`),
        stat('upstream_share', 'Time upstream', overall.upstream_share, fmt.pct)));
      if (!tools.length) {
        target.appendChild(empty('No tool calls in this window.'));
        return;
      }
      const scale = Math.max(...tools.map((row) => Math.max(row.p95_ms || 0, row.own_p95_ms || 0, row.upstream_p95_ms || 0)), 0);
      target.appendChild(table([
        { field: 'tool', label: 'Tool', format: fmt.text, filter: 'tool' },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true },
        { field: 'p50_ms', label: 'p50 ms', format: fmt.ms, num: true },
        { field: 'p95_ms', label: 'p95 ms', format: fmt.ms, num: true },
        { field: 'p99_ms', label: 'p99 ms', format: fmt.ms, num: true },
        { field: 'own_p95_ms', label: 'Own p95', format: fmt.ms, num: true, title: 'p95 of the time spent in the server itself' },
        { field: 'upstream_p95_ms', label: 'Upstream p95', format: fmt.ms, num: true, title: 'p95 of the time spent in upstream calls' },
        { field: 'upstream_share', label: 'Upstream', format: fmt.pct, num: true, title: 'share of the total time spent upstream' },
        { label: 'Own vs upstream p95', render: (row) => latencyBars(row, scale) },
      ], tools, { class: 'latency' }));
      target.appendChild(el('div', { class: 'legend' },
        el('span', { class: 'key own' }), 'own p95', el('span', { class: 'key upstream' }), 'upstream p95'));
    },

    tools(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'tool', label: 'Tool', filter: 'tool' },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true, bar: true },
        { field: 'errors', label: 'Errors', format: fmt.int, num: true },
        { field: 'error_rate', label: 'Error rate', format: fmt.pct, num: true },
        { field: 'p95_ms', label: 'p95 ms', format: fmt.ms, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
        { field: 'last_called', label: 'Last called', format: fmt.time, num: true },
      ], answer.rows, { rowAttrs: (row) => ({ class: row.errors ? 'has-errors' : null }) }) : empty('No tool calls in this window.'));
    },

    clients(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'client', label: 'Client', filter: 'client' },
        { field: 'events', label: 'Events', format: fmt.int, num: true, bar: true },
        { field: 'tool_calls', label: 'Tool calls', format: fmt.int, num: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'sessions', label: 'Sessions', format: fmt.int, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
      ], answer.rows) : empty('No clients in this window.'));
    },

    users(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'user', label: 'User', render: (row) => el('td', null,
          sliceLink('user', row.user, field('span', 'user', row.user)) || field('span', 'user', row.user), row.name ? el('span', { class: 'sub' }, ' ', field('span', 'name', row.name)) : null) },
        { field: 'events', label: 'Events', format: fmt.int, num: true, bar: true },
        { field: 'tool_calls', label: 'Tool calls', format: fmt.int, num: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'sessions', label: 'Sessions', format: fmt.int, num: true },
        { field: 'last_seen', label: 'Last seen', format: fmt.time, num: true },
      ], answer.rows) : empty('No identified users in this window.'));
    },

    failures(answer, target) {
      clear(target);
      if (!answer.rows.length) {
        target.appendChild(empty('No failures in this window.'));
        return;
      }
      const origins = [];
      for (const row of answer.rows) {
        let group = origins.find((item) => item.origin === row.origin);
        if (!group) origins.push(group = { origin: row.origin, total: row.origin_failures, rows: [] });
        group.rows.push(row);
      }
      const max = Math.max(...origins.map((group) => group.total));
      target.appendChild(el('div', { class: 'hbars' }, origins.map((group) => {
        const fill = el('span', { class: 'fill bad' });
        fill.style.width = `${(100 * group.total) / max}%`;
        return el('div', { class: 'hbar', 'data-origin': group.origin },
          el('span', { class: 'name' }, sliceLink('origin', group.origin === 'unknown' ? null : group.origin,
            field('span', 'origin', group.origin, fmt.text)) || field('span', 'origin', group.origin, fmt.text)),
          el('span', { class: 'track' }, fill),
          field('span', 'origin_failures', group.total, fmt.int, { class: 'num' }));
      })));
      const tableNode = el('table', { class: 'data failures' },
        el('thead', null, el('tr', null,
          el('th', { scope: 'col' }, 'Reason'), el('th', { scope: 'col', class: 'num' }, 'Failures'),
          el('th', { scope: 'col' }, 'Example'), el('th', { scope: 'col', class: 'num' }, 'Last seen'))));
      for (const group of origins) {
        const section = el('tbody', { 'data-origin': group.origin },
          el('tr', { class: 'group', 'data-group': group.origin },
            el('th', { colspan: '4', scope: 'rowgroup' }, group.origin, el('span', { class: 'sub' }, ` · ${fmt.int(group.total)}`))));
        for (const row of group.rows) {
          section.appendChild(el('tr', { 'data-row': true, 'data-origin': row.origin },
            field('td', 'reason', row.reason),
            field('td', 'failures', row.failures, fmt.int, { class: 'num' }),
            field('td', 'example', row.example, fmt.text, { class: 'example' }),
            field('td', 'last_seen', row.last_seen, fmt.time, { class: 'num' })));
        }
        tableNode.appendChild(section);
      }
      target.appendChild(tableNode);
    },

    methods(answer, target) {
      clear(target);
      if (!answer.rows.length) {
        target.appendChild(empty('No MCP messages in this window.'));
        return;
      }
      const ratio = answer.rows[0].calls_per_list;
      target.appendChild(el('div', { class: 'stats compact' },
        stat('calls_per_list', 'tools/call per tools/list', ratio, fmt.ratio)));
      target.appendChild(table([
        { field: 'method', label: 'Method', filter: 'method' },
        { field: 'events', label: 'Events', format: fmt.int, num: true },
        { field: 'share', label: 'Share', format: fmt.pct, num: true, bar: true },
      ], answer.rows));
    },

    prompts(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'prompt', label: 'Prompt' },
        { field: 'argument_keys', label: 'Argument keys', render: (row) => el('td', null, row.argument_keys
          ? el('code', { 'data-field': 'argument_keys', 'data-value': row.argument_keys }, row.argument_keys)
          : el('span', { class: 'sub', 'data-field': 'argument_keys', 'data-value': '' }, '(none)')) },
        { field: 'uses', label: 'Uses', format: fmt.int, num: true, bar: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
      ], answer.rows) : empty('No prompts used in this window.'));
    },

    cost(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'tool', label: 'Tool', filter: 'tool' },
        { field: 'user', label: 'User', filter: 'user', filterValue: (row) => (row.user === '(anonymous)' ? null : row.user) },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true },
        { field: 'response_bytes', label: 'Response', format: fmt.bytes, num: true, bar: true },
        { field: 'avg_response_bytes', label: 'Avg', format: fmt.bytes, num: true },
        { field: 'total_ms', label: 'Total time', format: (v) => `${fmt.ms(v)} ms`, num: true },
      ], answer.rows) : empty('No tool calls in this window.'));
    },

    unused_tools(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'tool', label: 'Tool' },
        { field: 'last_called', label: 'Last called', format: (v) => (v ? fmt.time(v) : 'never'), num: true },
        { field: 'calls_before', label: 'Calls before', format: fmt.int, num: true },
        { field: 'last_listed', label: 'Last listed', format: fmt.time, num: true },
      ], answer.rows) : empty('Every tool listed or called before this window was called in it.'));
    },

    sessions(answer, target) {
      const GROUPINGS = {
        'user + client': 'no session id: grouped by user, client and the session timeout of inactivity',
        'caller + client': 'no session id and no user: grouped by caller (address, user agent, credentials), client and the session timeout',
        'single event': 'no session id, no user and no caller: an event of its own',
      };
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'session', label: 'Session', render: (row) => el('td', { class: 'session-cell' },
          el('a', { href: fragment({ session: row.session }), 'data-field': 'session', 'data-value': row.session, title: row.session },
            row.session),
          row.grouping !== 'session id' ? el('span', { class: 'badge', 'data-field': 'grouping', title: GROUPINGS[row.grouping] || '' },
          row.grouping) : null) },
        { field: 'state', label: 'State', render: (row) => field('td', 'state', row.state, null, { class: `state-${row.state}`,
          title: row.state === 'active' ? 'an event within the session timeout' : 'no event for the session timeout: ended' }) },
        { field: 'user', label: 'User', filter: 'user' },
        { field: 'client', label: 'Client', filter: 'client' },
        { field: 'started', label: 'Started', format: fmt.time, num: true },
        { field: 'duration_s', label: 'Duration', format: fmt.seconds, num: true },
        { field: 'events', label: 'Events', format: fmt.int, num: true },
        { field: 'tool_calls', label: 'Tool calls', format: fmt.int, num: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'intents', label: 'Intents', format: fmt.int, num: true },
      ], answer.rows, { rowAttrs: (row) => ({ class: row.failures ? 'has-errors' : null }) }) : empty('No sessions in this window.'));
    },
  };

  function latencyBars(row, scale) {
    const cell = el('td', { class: 'split', 'aria-hidden': 'true' });
    for (const [name, value] of [['own', row.own_p95_ms], ['upstream', row.upstream_p95_ms]]) {
      const fill = el('span', { class: `fill ${name}` });
      fill.style.width = scale > 0 ? `${Math.max(0, (100 * (value || 0)) / scale)}%` : '0';
      cell.appendChild(el('span', { class: 'track thin', title: `${name} p95: ${fmt.ms(value)} ms` }, fill));
    }
    return cell;
  }

  /* ---------- events over time: stacked bars, failures as a line ---------- */

  function niceStep(max, ticks) {
    const raw = Math.max(max, 1) / ticks;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw);
    return Math.max(1, step);
  }

  function tickLabel(date, bucketMin, spanMs) {
    const pad = (n) => String(n).padStart(2, '0');
    const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
    const day = `${date.toLocaleString('en-US', { month: 'short' })} ${date.getDate()}`;
    if (bucketMin >= 1440) return day;
    if (spanMs > 86400000) return `${day} ${clock}`;
    return clock;
  }

  function drawTimeseries(answer, target) {
    clear(target);
    const rows = answer.rows;
    if (!rows.length) {
      target.appendChild(empty('No events in this window.'));
      return;
    }
    const from = new Date(answer.from).getTime();
    const to = new Date(answer.to).getTime();
    const bucketMin = rows[0].bucket_seconds / 60; // the store picks the bucket and says which
    const bucketMs = bucketMin * 60000;
    const stamps = rows.map((row) => new Date(row.bucket).getTime());
    // "all" starts in 1970 (the store's buckets start at the first event): draw from the first bucket with data.
    const start = state.last === 'all' ? Math.min(...stamps) : from;
    const count = Math.max(1, Math.ceil((to - start) / bucketMs));
    const totals = new Map();
    for (const row of rows) totals.set(row.series, (totals.get(row.series) || 0) + row.events);
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([name]) => name);
    const shown = ranked.length > MAX_SERIES + 1 ? ranked.slice(0, MAX_SERIES) : ranked;
    const seriesOf = (name) => (shown.includes(name) ? name : 'other');
    const series = shown.length < ranked.length ? [...shown, 'other'] : shown;
    const color = (name, index) => (state.by === 'family' && FAMILY_COLORS[name]) || (name === 'other' ? '#c9ccd1' : PALETTE[index % PALETTE.length]);

    const buckets = Array.from({ length: count }, () => ({ values: new Map(), total: 0, failures: 0 }));
    for (const row of rows) {
      const index = Math.min(count - 1, Math.max(0, Math.round((new Date(row.bucket).getTime() - start) / bucketMs)));
      const bucket = buckets[index];
      const name = seriesOf(row.series);
      bucket.values.set(name, (bucket.values.get(name) || 0) + row.events);
      bucket.total += row.events;
      bucket.failures += row.failures;
    }
    const max = Math.max(...buckets.map((bucket) => bucket.total));
    const step = niceStep(max, 4);
    const top = Math.ceil(max / step) * step;

    const width = Math.max(480, target.clientWidth || 1000);
    const height = 240;
    const margin = { top: 12, right: 16, bottom: 44, left: 56 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const slot = plotW / count;
    const barW = Math.max(1, slot * (count > 60 ? 0.9 : 0.75));
    const y = (value) => margin.top + plotH - (plotH * value) / top;
    const x = (index) => margin.left + index * slot;

    const chart = sv('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
      'aria-label': `Events per ${bucketMin >= 60 ? `${bucketMin / 60} h` : `${bucketMin} min`}, stacked by ${state.by}` });
    const grid = sv('g', { class: 'grid' });
    for (let value = 0; value <= top; value += step) {
      grid.appendChild(sv('line', { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }));
      grid.appendChild(sv('text', { x: margin.left - 8, y: y(value) + 4, 'text-anchor': 'end', class: 'tick' }, INT.format(value)));
    }
    chart.appendChild(grid);

    const bars = sv('g', { class: 'bars' });
    buckets.forEach((bucket, index) => {
      if (!bucket.total) return;
      let base = 0;
      const when = new Date(start + index * bucketMs);
      series.forEach((name, seriesIndex) => {
        const value = bucket.values.get(name) || 0;
        if (!value) return;
        const rect = sv('rect', {
          x: x(index) + (slot - barW) / 2, width: barW,
          y: y(base + value), height: Math.max(0.5, y(base) - y(base + value)),
          fill: color(name, seriesIndex),
        }, sv('title', null, `${fmt.time(when.toISOString())} · ${name}: ${INT.format(value)}`));
        bars.appendChild(rect);
        base += value;
      });
    });
    chart.appendChild(bars);

    // Failures: a red mark at the bucket's failure count (on the same scale as the bars).
    buckets.forEach((bucket, index) => {
      if (!bucket.failures) return;
      const half = Math.max(3, Math.min(barW / 2 + 2, 10));
      chart.appendChild(sv('line', {
        class: 'failure-mark', x1: x(index) + slot / 2 - half, x2: x(index) + slot / 2 + half,
        y1: y(bucket.failures), y2: y(bucket.failures),
      }, sv('title', null, `${INT.format(bucket.failures)} failures`)));
    });

    const axis = sv('g', { class: 'axis' });
    axis.appendChild(sv('line', { x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0) }));
    const labelEvery = Math.max(1, Math.ceil(count / Math.max(2, Math.floor(plotW / 90))));
    for (let index = 0; index <= count; index += labelEvery) {
      const when = new Date(start + index * bucketMs);
      axis.appendChild(sv('line', { x1: x(index), x2: x(index), y1: y(0), y2: y(0) + 4 }));
      axis.appendChild(sv('text', { x: x(index), y: y(0) + 17, 'text-anchor': 'middle', class: 'tick' }, tickLabel(when, bucketMin, to - start)));
    }
    axis.appendChild(sv('text', { class: 'axis-title', x: margin.left + plotW / 2, y: height - 6, 'text-anchor': 'middle' },
      `time (one bar = ${bucketMin >= 1440 ? `${bucketMin / 1440} d` : bucketMin >= 60 ? `${bucketMin / 60} h` : `${bucketMin} min`})`));
    axis.appendChild(sv('text', { class: 'axis-title', transform: `translate(14 ${margin.top + plotH / 2}) rotate(-90)`, 'text-anchor': 'middle' },
      'events'));
    chart.appendChild(axis);
    target.appendChild(chart);

    const legend = el('div', { class: 'legend' });
    series.forEach((name, index) => {
      const swatch = el('span', { class: 'key' });
      swatch.style.background = color(name, index);
      const total = name === 'other'
        ? ranked.filter((item) => !shown.includes(item)).reduce((sum, item) => sum + totals.get(item), 0)
        : totals.get(name);
      legend.appendChild(el('span', { class: 'item', 'data-series': name }, swatch, name, el('span', { class: 'sub' }, ` ${INT.format(total)}`)));
    });
    if (buckets.some((bucket) => bucket.failures)) {
      legend.appendChild(el('span', { class: 'item' }, el('span', { class: 'key line' }), 'failures'));
    }
    target.appendChild(legend);
  }

  /* ---------- one session's timeline ---------- */

  async function loadSession(signal) {
    const target = panelBody('session');
    $('session-id').textContent = state.session;
    clear($('session-facts'));
    try {
      const answer = await query('session', { session: state.session, limit: String(SESSION_LIMIT) }, signal);
      if (signal.aborted) return;
      showWindow(answer);
      drawSession(answer.rows, target);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      clear(target).appendChild(el('p', { class: 'panel-error' }, `Could not load: ${error.message}`));
      throw error;
    }
  }

  function drawSession(rows, target) {
    clear(target);
    const facts = $('session-facts');
    if (!rows.length) {
      target.appendChild(empty('No events in this session.'));
      return;
    }
    const times = rows.map((row) => new Date(row.ts).getTime());
    const begin = Math.min(...times);
    const end = Math.max(...rows.map((row, index) => times[index] + (row.duration_ms || 0)));
    const span = Math.max(1, end - begin);
    // Each from the first row that has it: the handshake comes before the user is identified.
    const user = (rows.find((row) => row.user) || {}).user;
    const client = (rows.find((row) => row.client) || {}).client;
    const failures = rows.filter((row) => row.is_error).length;
    facts.append(
      fact('user', 'User', user),
      fact('client', 'Client', client),
      fact('started', 'Started', rows[0].ts, fmt.time),
      fact('duration', 'Duration', (end - begin) / 1000, fmt.seconds),
      fact('events', 'Events', rows.length, fmt.int),
      fact('failures', 'Failures', failures, fmt.int, failures ? 'bad' : ''),
    );

    const tbody = el('tbody');
    rows.forEach((row, index) => {
      const custom = row.type.startsWith('custom:');
      const offset = (times[index] - begin) / 1000;
      const kind = row.is_error ? 'error' : custom ? 'custom' : 'request';
      const bar = el('span', { class: `fill ${kind}` });
      bar.style.left = `${(100 * (times[index] - begin)) / span}%`;
      bar.style.width = `${Math.max(0.6, (100 * (row.duration_ms || 0)) / span)}%`;
      const outcome = row.is_error
        ? el('td', { class: 'outcome' },
          el('span', { class: 'badge bad' }, 'error'), ' ',
          row.error_type ? field('span', 'error_type', row.error_type, fmt.text, { class: 'etype' }) : null,
          row.error_message ? el('div', { class: 'emsg' }, field('span', 'error_message', row.error_message)) : null,
          row.failure_origin || row.failure_reason
            ? el('div', { class: 'sub' }, field('span', 'failure_origin', row.failure_origin), ' / ',
              field('span', 'failure_reason', row.failure_reason))
            : null)
        : el('td', { class: 'outcome' }, el('span', { class: 'badge ok' }, 'ok'));
      tbody.appendChild(el('tr', { 'data-row': true, 'data-type': row.type, class: kind },
        el('td', { class: 'num' }, field('span', 'ts', row.ts, fmt.time),
          el('div', { class: 'sub' }, `+${offset.toFixed(offset < 10 ? 2 : 1)} s`)),
        el('td', null, field('span', 'type', row.type, fmt.text, { class: `type ${kind}` }),
          row.resource ? el('div', null, field('span', 'resource', row.resource, fmt.text, { class: 'resource' })) : null),
        el('td', { class: 'detail' },
          row.intent ? el('div', { class: 'intent' }, field('span', 'intent', row.intent)) : null,
          row.message !== null && row.message !== undefined
            ? el('div', { class: 'message' }, field('span', 'message', row.message)) : null,
          !row.intent && (row.message === null || row.message === undefined) ? el('span', { class: 'sub' }, '–') : null),
        field('td', 'duration_ms', row.duration_ms, (v) => `${fmt.ms(v)} ms`, { class: 'num' }),
        el('td', { class: 'waterfall', 'aria-hidden': 'true' }, el('span', { class: 'lane' }, bar)),
        outcome));
    });
    target.appendChild(el('table', { class: 'data timeline' },
      el('thead', null, el('tr', null,
        el('th', { scope: 'col', class: 'num' }, 'Time'), el('th', { scope: 'col' }, 'Event'),
        el('th', { scope: 'col' }, 'Intent / message'), el('th', { scope: 'col', class: 'num' }, 'Duration'),
        el('th', { scope: 'col' }, 'Timeline'), el('th', { scope: 'col' }, 'Outcome'))),
      tbody));
  }

  function fact(name, label, value, format, extra) {
    return el('div', { class: `fact ${extra || ''}` }, el('span', { class: 'label' }, label), field('span', name, value, format));
  }

  /* ---------- wiring ---------- */

  $('keyform-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('keyform-input').value.trim();
    if (!key) return;
    $('keyform-input').value = '';
    state.key = key;
    storeKey(key);
    load();
  });

  $('forget').addEventListener('click', () => {
    forgetKey();
    clearPanels();
    $('project').hidden = true;
    $('window').textContent = '';
    load();
  });

  $('refresh').addEventListener('click', () => load());

  for (const button of document.querySelectorAll('#by-toggle button')) {
    button.addEventListener('click', () => {
      if (button.dataset.by !== state.by) location.hash = fragment({ by: button.dataset.by });
    });
  }

  window.addEventListener('hashchange', () => {
    const before = { last: state.last, session: state.session, key: state.key, filters: JSON.stringify(state.filters) };
    readState();
    const onlyBy = before.last === state.last && before.session === state.session && before.key === state.key
      && before.filters === JSON.stringify(state.filters) && !state.session && body.dataset.loaded === 'true';
    if (onlyBy) {
      // Only the grouping changed: query the chart alone.
      renderChrome();
      const signal = (controller = new AbortController()).signal;
      loadPanel('timeseries', signal).catch((error) => { if (error.name !== 'AbortError') setError(error.message); });
    } else {
      load();
    }
  });

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (lastTimeseries && !state.session) drawTimeseries(lastTimeseries, panelBody('timeseries'));
    }, 150);
  });

  readState();
  load();
})();
