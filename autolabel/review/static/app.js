// autolabel review page: plain JS, no build step.
// Holds the current item plus a few prefetched ones (claimed with a lease, renewed while the
// page is open) whose previews are downloaded *and decoded* ahead, so a key press shows the
// next item at once. Decisions go to an outbox that is sent in the background, in order:
// the reviewer never waits on the server. A failed send is shown and retried; the outbox is
// kept in localStorage, so a reload or a crash does not lose it.
// A key press does only what the next frame needs (swap in the decoded preview, draw the
// box); saving the outbox, sending, claiming and downloading/decoding the next previews wait
// until that frame is painted, so they never compete with it. Previews are requested at the
// size they are shown (the server rounds it up to a few fixed sizes): a phone screenshot
// shown 950 px high decodes and paints 2.4x fewer pixels than the 1600 px preview.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const PREFETCH = 4; // items held at once: the one shown + the next three
  const MIN_BOX = 2; // px in image coordinates
  const RETRY_MS = [500, 1000, 2000, 5000, 10000];
  const state = {
    reviewer: null,
    lease: 120,
    previewSide: 1600, // the server's largest preview side
    view: null, // {w, h}: the size of #view, kept by a ResizeObserver (no layout reads)
    k: 1, // screen px per image px of the item shown
    queue: [], // claimed items; queue[0] is shown
    cur: null,
    box: null, // working box [x0, y0, x1, y1] in image pixels
    sel: 0, // index into cur.candidates
    edited: false,
    editing: false,
    busy: false,
    filling: null,
    images: new Map(), // image_id -> {img, ready}: prefetched and decoded previews
    outbox: [], // decisions not yet confirmed by the server, oldest first
    sending: false,
    failures: 0,
  };
  const headers = {};

  async function api(method, path, body, extra) {
    const opts = Object.assign(
      { method, headers: Object.assign({}, headers), credentials: "same-origin" },
      extra || {}
    );
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (!resp.ok) {
      let msg = resp.statusText;
      if (data && data.detail) {
        msg = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      }
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  let toastTimer = null;
  function toast(msg, kind) {
    const t = $("toast");
    t.textContent = msg;
    t.className = "show " + (kind || "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (t.className = ""), kind === "error" ? 5000 : 1800);
  }

  // ---- start-up -------------------------------------------------------------------------
  async function boot() {
    const url = new URL(location.href);
    if (url.searchParams.has("token")) {
      // the server stored the token in an HttpOnly cookie; keep it out of the history
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    const stored = localStorage.getItem("autolabel.reviewer");
    if (stored) headers["X-Reviewer"] = stored;
    let cfg;
    try {
      cfg = await api("GET", "/api/config");
    } catch (e) {
      showMessage(e.message);
      return;
    }
    state.lease = cfg.lease_seconds;
    state.previewSide = cfg.preview_max_side;
    if (cfg.auth === "name" && !cfg.reviewer) {
      askName();
      return;
    }
    start(cfg.reviewer);
  }

  function askName() {
    $("login").hidden = false;
    const input = $("reviewer-name");
    input.focus();
    $("login-form").onsubmit = (ev) => {
      ev.preventDefault();
      const name = input.value.trim();
      if (!/^[\w.@-]{1,64}$/.test(name)) {
        toast("name: use 1-64 letters, digits or _.@-", "error");
        return;
      }
      localStorage.setItem("autolabel.reviewer", name);
      headers["X-Reviewer"] = name;
      $("login").hidden = true;
      start(name);
    };
  }

  async function start(name) {
    state.reviewer = name;
    watchView();
    $("who").textContent = name;
    loadOutbox();
    flush();
    try {
      const held = await api("GET", "/api/held");
      state.queue = held.items;
      state.queue.forEach(prefetch);
      await fill();
    } catch (e) {
      showMessage(e.message);
      return;
    }
    show(state.queue[0] || null);
    refreshStats();
    setInterval(renew, Math.max(2000, (state.lease * 1000) / 3));
    setInterval(refreshStats, 15000);
    window.addEventListener("pagehide", () => {
      saveOutbox();
      release();
    });
  }

  function watchView() {
    const view = $("view");
    state.view = { w: view.clientWidth, h: view.clientHeight };
    new ResizeObserver((entries) => {
      const r = entries[entries.length - 1].contentRect;
      if (r.width === state.view.w && r.height === state.view.h) return;
      state.view = { w: r.width, h: r.height };
      render();
    }).observe(view);
  }

  // once the item on screen is painted with its image decoded (its frame and the one after
  // it have begun): the place for work a key press must not wait for; it would compete with
  // that frame for the main thread and, on a busy machine, for the CPU
  function afterPaint(fn) {
    let done = false;
    const run = () => {
      if (done) return;
      done = true;
      fn();
    };
    setTimeout(run, 250); // a hidden page paints no frames: never hold a decision for that
    const img = $("img");
    const decoded = img && img.src ? img.decode().catch(() => {}) : Promise.resolve();
    decoded.then(() => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(run, 0))));
  }

  function showMessage(msg) {
    $("stage").hidden = true;
    $("empty").hidden = false;
    $("empty").textContent = msg;
  }

  // ---- queue: claim, prefetch, lease -----------------------------------------------------
  function fill() {
    if (state.filling) return state.filling;
    const filling = (async () => {
      while (state.queue.length < PREFETCH) {
        const r = await api("POST", "/api/next");
        if (!r.item) break;
        if (state.queue.some((it) => it.item_id === r.item.item_id)) break;
        state.queue.push(r.item);
        prefetch(r.item);
      }
    })();
    // cleared only after the assignment: a fill with nothing to do finishes synchronously
    state.filling = filling;
    const done = () => {
      if (state.filling === filling) state.filling = null;
    };
    filling.then(done, done);
    return filling;
  }

  // scale that fits an image of w x h into the view (up to 4x for small images)
  function fitScale(w, h) {
    const v = state.view;
    if (!v || !w || !h) return 0;
    return Math.min(v.w / w, v.h / h, 4);
  }

  function imageUrl(item) {
    // the shown size in device pixels; the server rounds it up to one of its fixed sizes
    const k = fitScale(item.width, item.height);
    let side = state.previewSide;
    if (k) {
      const need = Math.ceil(k * Math.max(item.width, item.height) * (window.devicePixelRatio || 1));
      side = Math.min(side, Math.max(need, 1));
    }
    return "/api/images/" + item.image_id + "?max_side=" + side;
  }

  function prefetch(item) {
    if (state.images.has(item.image_id)) return state.images.get(item.image_id);
    const img = new Image();
    img.id = "img";
    img.alt = "image under review";
    img.draggable = false;
    img.decoding = "sync";
    img.src = imageUrl(item);
    // decode() resolves once the pixels are ready to paint; errors show as a broken image
    const entry = { img, ready: img.decode().then(() => true, () => false) };
    state.images.set(item.image_id, entry);
    const held = new Set(state.queue.map((it) => it.image_id));
    for (const key of state.images.keys()) {
      if (state.images.size <= 2 * PREFETCH) break;
      if (!held.has(key)) state.images.delete(key);
    }
    return entry;
  }

  function heldIds() {
    return state.queue.map((it) => it.item_id);
  }

  function renew() {
    if (!state.queue.length) return;
    api("POST", "/api/renew", { item_ids: heldIds() }).catch(() => {});
  }

  function release() {
    if (!state.queue.length) return;
    api("POST", "/api/release", { item_ids: heldIds() }, { keepalive: true }).catch(() => {});
  }

  async function refreshStats() {
    try {
      const s = await api("GET", "/api/stats");
      $("counter").textContent =
        "done " + s.done + (s.mine !== undefined ? " (you " + s.mine + ")" : "") +
        " · remaining " + s.remaining;
    } catch (e) {
      /* counter is informational */
    }
  }

  // ---- showing an item -------------------------------------------------------------------
  function show(item) {
    state.cur = item;
    state.sel = 0;
    state.edited = false;
    setEditing(false);
    const stage = $("stage");
    if (!item) {
      stage.hidden = true;
      stage.dataset.itemId = "";
      $("empty").hidden = false;
      $("empty").textContent = "Queue empty: nothing left for you to review. 🎉";
      $("reason").textContent = "";
      $("reason").className = "badge";
      $("score").textContent = "";
      $("phrase").textContent = "";
      $("caption").textContent = "";
      return;
    }
    state.box = item.box.slice();
    $("empty").hidden = true;
    stage.hidden = false;
    const entry = prefetch(item);
    const old = $("img");
    fit(entry.img, item);
    if (old !== entry.img) old.replaceWith(entry.img);
    entry.img.onload = render;
    entry.ready.then(() => state.cur === item && render());
    stage.dataset.itemId = String(item.item_id);
    $("reason").textContent = item.reason;
    $("reason").className = "badge " + item.reason;
    let score = "score " + item.score.toFixed(2);
    if (item.p_correct !== null && item.p_correct !== undefined) {
      score += " · p " + item.p_correct.toFixed(2);
    }
    $("score").textContent = score;
    $("phrase").textContent = "“" + item.phrase + "”";
    $("caption").textContent = item.caption ? "caption: " + item.caption : "";
    render();
  }

  function scale() {
    return state.k;
  }

  function boxDiv(box, cls, label) {
    const k = scale();
    const d = document.createElement("div");
    d.className = "box " + cls;
    d.style.left = box[0] * k + "px";
    d.style.top = box[1] * k + "px";
    d.style.width = (box[2] - box[0]) * k + "px";
    d.style.height = (box[3] - box[1]) * k + "px";
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = label;
    if (box[1] * k < 18) tag.style.top = "0"; // no room above: put the tag inside
    d.appendChild(tag);
    return d;
  }

  function fit(img, item) {
    // fit the image to the view (up to 4x for small images); boxes use the same scale.
    // Sizes come from the item and the observed view size: no layout is forced here.
    const w = item.width || img.naturalWidth;
    const h = item.height || img.naturalHeight;
    const k = fitScale(w, h);
    if (!k) return false;
    const width = Math.floor(w * k);
    const height = Math.floor(h * k);
    state.k = width / w;
    if (img.style.width !== width + "px") img.style.width = width + "px";
    if (img.style.height !== height + "px") img.style.height = height + "px";
    return true;
  }

  function render() {
    const layer = $("boxes");
    layer.textContent = "";
    const item = state.cur;
    if (!item) return;
    if (!fit($("img"), item)) return;
    const cands = item.candidates || [{ box: item.box, score: item.score, phrase: item.phrase }];
    cands.forEach((c, i) => {
      if (i === state.sel) return;
      layer.appendChild(boxDiv(c.box, "cand", i + 1 + " " + c.phrase + " " + c.score.toFixed(2)));
    });
    const c = cands[state.sel] || cands[0];
    const label = state.sel + 1 + " " + c.phrase + (state.edited ? " (adjusted)" : "");
    const work = boxDiv(state.box, "work" + (state.edited ? " edited" : ""), label);
    work.id = "work-box";
    for (const corner of ["tl", "tr", "bl", "br"]) {
      const h = document.createElement("div");
      h.className = "handle " + corner;
      h.dataset.corner = corner;
      h.addEventListener("pointerdown", startHandleDrag);
      work.appendChild(h);
    }
    layer.appendChild(work);
  }

  // ---- editing the box (mouse) -----------------------------------------------------------
  function toImage(ev) {
    const rect = $("img").getBoundingClientRect();
    const k = scale();
    const w = state.cur.width || rect.width / k;
    const h = state.cur.height || rect.height / k;
    // snap inside the image
    const x = Math.min(Math.max((ev.clientX - rect.left) / k, 0), w);
    const y = Math.min(Math.max((ev.clientY - rect.top) / k, 0), h);
    return [x, y];
  }

  function normalize(b) {
    return [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])];
  }

  function dragWith(ev, onMove) {
    // listeners live on window: render() replaces the box and its handles while dragging
    ev.preventDefault();
    ev.stopPropagation();
    const before = state.box.slice();
    const move = (e) => {
      onMove(toImage(e));
      render();
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      window.removeEventListener("pointercancel", up);
      let b = normalize(state.box);
      if (b[2] - b[0] < MIN_BOX || b[3] - b[1] < MIN_BOX) b = before;
      state.box = b;
      if (b.some((v, i) => Math.abs(v - before[i]) > 0.5)) state.edited = true;
      render();
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
    window.addEventListener("pointercancel", up);
  }

  function startHandleDrag(ev) {
    if (!state.cur) return;
    const corner = ev.currentTarget.dataset.corner;
    const fixed = [
      corner.includes("l") ? state.box[2] : state.box[0],
      corner.includes("t") ? state.box[3] : state.box[1],
    ];
    dragWith(ev, ([x, y]) => {
      state.box = [fixed[0], fixed[1], x, y];
    });
  }

  $("boxes").addEventListener("pointerdown", (ev) => {
    if (!state.cur || !state.editing || ev.target !== $("boxes")) return;
    const [x0, y0] = toImage(ev);
    state.box = [x0, y0, x0, y0];
    dragWith(ev, ([x, y]) => {
      state.box = [x0, y0, x, y];
    });
  });

  function setEditing(on) {
    state.editing = on;
    $("stage").classList.toggle("editing", on);
    document.querySelector('[data-act="edit"]').classList.toggle("on", on);
  }

  function pick(i) {
    const cands = (state.cur && state.cur.candidates) || [];
    if (i >= cands.length) return;
    state.sel = i;
    state.box = cands[i].box.slice();
    state.edited = false;
    render();
  }

  function resetBox() {
    if (!state.cur) return;
    pick(0);
    setEditing(false);
  }

  // ---- decisions: an outbox sent in the background ---------------------------------------
  function outboxKey() {
    return "autolabel.outbox." + state.reviewer;
  }

  function saveOutbox() {
    try {
      localStorage.setItem(outboxKey(), JSON.stringify(state.outbox));
    } catch (e) {
      /* storage full or disabled: the outbox still lives in memory */
    }
  }

  function loadOutbox() {
    try {
      const saved = JSON.parse(localStorage.getItem(outboxKey()) || "[]");
      if (Array.isArray(saved)) state.outbox = saved;
    } catch (e) {
      state.outbox = [];
    }
    if (state.outbox.length) toast(state.outbox.length + " unsent decision(s) from before: sending");
  }

  function showPending() {
    const n = state.outbox.length;
    const el = $("pending");
    if (!el) return;
    el.hidden = n === 0 || state.failures === 0;
    el.textContent = n + " decision" + (n === 1 ? "" : "s") + " not saved yet: retrying…";
  }

  async function flush() {
    if (state.sending) return;
    state.sending = true;
    try {
      while (state.outbox.length) {
        const entry = state.outbox[0];
        try {
          await api("POST", "/api/decide", entry.body);
          state.failures = 0;
        } catch (e) {
          if (e.status === undefined || e.status >= 500 || e.status === 429 || e.status === 401) {
            // network or server trouble: keep it, show it, retry later
            state.failures += 1;
            showPending();
            const wait = RETRY_MS[Math.min(state.failures - 1, RETRY_MS.length - 1)];
            setTimeout(flush, wait);
            return;
          }
          // refused for good (decided by someone else, bad input): say so, drop it
          toast("item " + entry.body.item_id + " not saved: " + e.message, "error");
        }
        state.outbox.shift();
        saveOutbox();
        showPending();
      }
      statsSoon();
    } finally {
      state.sending = false;
    }
  }

  function waitFlushed() {
    return new Promise((resolve) => {
      const check = () => (state.outbox.length ? setTimeout(check, 20) : resolve());
      flush();
      check();
    });
  }

  // counting a 1M-item queue costs the server ~0.3 s of CPU: refresh the counter at most
  // every 2 s while deciding (the server also reuses its counts), never once per decision
  let statsTimer = null;
  let statsAt = 0;
  function statsSoon() {
    if (statsTimer) return;
    const wait = Math.max(300, statsAt + 2000 - Date.now());
    statsTimer = setTimeout(() => {
      statsTimer = null;
      statsAt = Date.now();
      refreshStats();
    }, wait);
  }

  function send(action, extra, { advance = true } = {}) {
    if (!state.cur) return false;
    const item = state.cur;
    state.outbox.push({ body: Object.assign({ item_id: item.item_id, action }, extra) });
    if (advance) {
      state.queue = state.queue.filter((it) => it.item_id !== item.item_id);
      show(state.queue[0] || null);
    }
    // saved, sent and the window refilled once the next item is on screen; a page that is
    // closed or reloaded before that saves the outbox on pagehide
    afterPaint(() => {
      saveOutbox();
      flush();
      if (advance) refill();
    });
    return true;
  }

  function refill() {
    fill().then(() => {
      if (!state.cur && state.queue.length) show(state.queue[0]);
    }, (e) => toast(e.message, "error"));
  }

  function accept() {
    if (!state.cur) return;
    const cur = state.cur;
    const moved = state.edited || state.sel !== 0;
    if (!moved) return send("accept", {});
    const box = state.box.map((v) => Math.round(v * 10) / 10);
    const reason = state.edited ? "drawn" : "picked box " + (state.sel + 1);
    const cap = cur.candidates && state.sel ? cur.candidates[state.sel] : null;
    return send("adjust", { box, reason: cap ? reason + " (" + cap.phrase + ")" : reason });
  }

  function openCaption() {
    if (!state.cur) return;
    const input = $("caption-input");
    input.value = state.cur.caption || state.cur.phrase;
    $("caption-box").hidden = false;
    input.focus();
    input.select();
  }

  $("caption-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("caption-input").value.trim();
    $("caption-box").hidden = true;
    if (!text || !state.cur) return;
    const item = state.cur;
    if (send("caption", { caption: text }, { advance: false })) {
      item.caption = text;
      if (state.cur === item) $("caption").textContent = "caption: " + text;
      toast("caption saved");
    }
  });

  $("caption-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      ev.preventDefault();
      $("caption-box").hidden = true;
    }
    ev.stopPropagation();
  });

  async function undo() {
    if (state.busy) return;
    state.busy = true;
    try {
      await waitFlushed(); // the server undoes the last decision it has
      const r = await api("POST", "/api/undo", {});
      if (r.item) {
        state.queue = [r.item].concat(state.queue.filter((it) => it.item_id !== r.item.item_id));
        show(r.item);
      }
      toast("undid " + r.action + (r.item ? " on item " + r.item.item_id : ""));
    } catch (e) {
      toast(e.message, "error");
    } finally {
      state.busy = false;
      refreshStats();
    }
  }

  function toggleHelp(force) {
    const h = $("help");
    h.hidden = force === undefined ? !h.hidden : !force;
  }

  const ACTIONS = {
    accept,
    reject: () => send("reject", { reason: "no_object" }),
    edit: () => setEditing(!state.editing),
    caption: openCaption,
    skip: () => send("skip", {}),
    undo,
    help: () => toggleHelp(),
  };

  document.querySelectorAll("#actions button").forEach((b) => {
    b.addEventListener("click", (ev) => {
      ev.currentTarget.blur();
      if (b.dataset.act === "reject" && ev.shiftKey) send("reject", { reason: "wrong_object" });
      else ACTIONS[b.dataset.act]();
    });
  });

  document.addEventListener("keydown", (ev) => {
    if (!$("login").hidden || !$("caption-box").hidden) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const k = ev.key;
    let handled = true;
    if (k === "a" || k === "A" || k === "Enter") accept();
    else if (k === "r") send("reject", { reason: "no_object" });
    else if (k === "R") send("reject", { reason: "wrong_object" });
    else if (k === "e" || k === "E") setEditing(!state.editing);
    else if (k === "c" || k === "C") openCaption();
    else if (k === "s" || k === "S") send("skip", {});
    else if (k === "u" || k === "U") undo();
    else if (k === "?") toggleHelp();
    else if (k === "Escape") {
      if (!$("help").hidden) toggleHelp(false);
      else resetBox();
    } else if (k >= "1" && k <= "9") pick(Number(k) - 1);
    else handled = false;
    if (handled) ev.preventDefault();
  });

  boot();
})();
