// autolabel spot-check gallery: auto-accepted boxes, each as the export will see it (the crop)
// beside its source with the box drawn; X flags the selected crop wrong (an audit outcome).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const CROP = 160; // px: longest side of a crop tile
  const SRC = 160; // px: longest side of a source thumbnail
  const PAGE = 60;
  const UPSCALE_WARN = 1.5; // export enlarges more than this: likely a thumbnail
  const headers = {};
  const state = { items: [], sel: 0, offset: 0, total: 0, flags: new Map(), busy: false };

  async function api(method, path, body) {
    const opts = { method, headers: Object.assign({}, headers), credentials: "same-origin" };
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
      const err = new Error((data && data.detail) || resp.statusText);
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

  async function boot() {
    const stored = localStorage.getItem("autolabel.reviewer");
    if (stored) headers["X-Reviewer"] = stored;
    let cfg;
    try {
      cfg = await api("GET", "/api/config");
    } catch (e) {
      $("estimate").textContent = e.message;
      return;
    }
    if (cfg.auth === "name" && !cfg.reviewer) {
      $("login").hidden = false;
      $("reviewer-name").focus();
      $("login-form").onsubmit = (ev) => {
        ev.preventDefault();
        const name = $("reviewer-name").value.trim();
        if (!/^[\w.@-]{1,64}$/.test(name)) return toast("name: use 1-64 letters, digits or _.@-", "error");
        localStorage.setItem("autolabel.reviewer", name);
        headers["X-Reviewer"] = name;
        $("login").hidden = true;
        start(name);
      };
      return;
    }
    start(cfg.reviewer);
  }

  function start(name) {
    $("who").textContent = name;
    for (const id of ["f-phrase", "f-min", "f-max", "f-order"]) {
      $(id).addEventListener("change", () => load(0));
    }
    $("filters").addEventListener("submit", (ev) => ev.preventDefault());
    $("prev").onclick = () => load(Math.max(0, state.offset - PAGE));
    $("next").onclick = () => state.offset + PAGE < state.total && load(state.offset + PAGE);
    load(0);
  }

  function query(offset) {
    const p = new URLSearchParams({ order: $("f-order").value, offset, limit: PAGE });
    if ($("f-phrase").value) p.set("phrase", $("f-phrase").value);
    if ($("f-min").value !== "") p.set("min_score", $("f-min").value);
    if ($("f-max").value !== "") p.set("max_score", $("f-max").value);
    return "/api/gallery?" + p;
  }

  async function load(offset) {
    let g;
    try {
      g = await api("GET", query(offset));
    } catch (e) {
      return toast(e.message, "error");
    }
    state.items = g.items;
    state.total = g.total;
    state.offset = offset;
    state.sel = 0;
    const sel = $("f-phrase");
    const chosen = sel.value;
    sel.textContent = "";
    for (const ph of [""].concat(g.phrases)) {
      const o = document.createElement("option");
      o.value = ph;
      o.textContent = ph || "all";
      sel.appendChild(o);
    }
    sel.value = g.phrases.includes(chosen) ? chosen : "";
    showEstimate(g.estimate);
    render();
  }

  function showEstimate(est) {
    $("estimate").textContent = est.text;
  }

  function previewSide(it) {
    // the smallest preview in which the box is at least CROP px (the server rounds up)
    const boxSide = Math.max(it.box[2] - it.box[0], it.box[3] - it.box[1], 1);
    return Math.ceil((CROP * Math.max(it.width, it.height)) / boxSide);
  }

  function cropTile(it) {
    const [x0, y0, x1, y1] = it.box;
    const d = CROP / Math.max(x1 - x0, y1 - y0, 1); // source px -> screen px
    const tile = document.createElement("div");
    tile.className = "crop";
    tile.style.width = Math.round((x1 - x0) * d) + "px";
    tile.style.height = Math.round((y1 - y0) * d) + "px";
    tile.style.backgroundImage =
      'url("/api/images/' + it.image_id + "?max_side=" + previewSide(it) + '")';
    tile.style.backgroundSize = it.width * d + "px " + it.height * d + "px";
    tile.style.backgroundPosition = -x0 * d + "px " + -y0 * d + "px";
    tile.title = "what the export cuts out (shown " + CROP + " px)";
    return tile;
  }

  function sourceTile(it) {
    const k = SRC / Math.max(it.width, it.height, 1);
    const wrap = document.createElement("div");
    wrap.className = "src";
    const img = document.createElement("img");
    img.alt = "source image " + it.image_id;
    img.src = "/api/images/" + it.image_id + "?max_side=256";
    img.style.width = Math.round(it.width * k) + "px";
    img.style.height = Math.round(it.height * k) + "px";
    const box = document.createElement("div");
    box.className = "srcbox";
    box.style.left = it.box[0] * k - 2 + "px";
    box.style.top = it.box[1] * k - 2 + "px";
    box.style.width = Math.max(2, (it.box[2] - it.box[0]) * k) + "px";
    box.style.height = Math.max(2, (it.box[3] - it.box[1]) * k) + "px";
    wrap.append(img, box);
    return wrap;
  }

  function cell(it, i) {
    const c = document.createElement("div");
    c.className = "cell";
    c.dataset.proposalId = String(it.proposal_id);
    c.dataset.index = String(i);
    const pair = document.createElement("div");
    pair.className = "pair";
    pair.append(cropTile(it), sourceTile(it));
    const bw = Math.round(it.box[2] - it.box[0]);
    const bh = Math.round(it.box[3] - it.box[1]);
    const cap = document.createElement("div");
    cap.className = "cap";
    const up = document.createElement("span");
    up.className = "upscale" + (it.upscale !== null && it.upscale > UPSCALE_WARN ? " up-warn" : "");
    up.textContent = it.upscale === null ? "upscale ?" : "upscale ×" + it.upscale.toFixed(2);
    cap.append(
      "#" + it.proposal_id + " “" + it.phrase + "” score " + it.score.toFixed(2),
      document.createElement("br"),
      "source " + it.width + "×" + it.height + " · box " + bw + "×" + bh + " · ",
      up
    );
    c.append(pair, cap);
    c.addEventListener("click", () => select(i));
    return c;
  }

  function render() {
    const grid = $("grid");
    grid.textContent = "";
    state.items.forEach((it, i) => grid.appendChild(cell(it, i)));
    if (!state.items.length) grid.textContent = "No auto-accepted boxes match.";
    $("count").textContent = state.total + " auto-accepted";
    const last = Math.min(state.offset + PAGE, state.total);
    $("page").textContent = state.total ? state.offset + 1 + "–" + last + " of " + state.total : "";
    for (const [pid] of state.flags) mark(pid, true);
    select(Math.min(state.sel, state.items.length - 1));
  }

  function cellOf(pid) {
    return document.querySelector('.cell[data-proposal-id="' + pid + '"]');
  }

  function mark(pid, on) {
    const c = cellOf(pid);
    if (c) c.classList.toggle("flagged", on);
  }

  function select(i) {
    if (i < 0 || i >= state.items.length) return;
    document.querySelectorAll(".cell.sel").forEach((c) => c.classList.remove("sel"));
    state.sel = i;
    const c = document.querySelector('.cell[data-index="' + i + '"]');
    if (c) {
      c.classList.add("sel");
      c.scrollIntoView({ block: "nearest" });
    }
  }

  function perRow() {
    const cells = document.querySelectorAll(".cell");
    if (cells.length < 2) return 1;
    const top = cells[0].offsetTop;
    let n = 0;
    while (n < cells.length && cells[n].offsetTop === top) n++;
    return Math.max(1, n);
  }

  async function toggleFlag() {
    const it = state.items[state.sel];
    if (!it || state.busy) return;
    state.busy = true;
    const pid = it.proposal_id;
    try {
      if (state.flags.has(pid)) {
        const r = await api("POST", "/api/gallery/unflag", { decision_id: state.flags.get(pid) });
        state.flags.delete(pid);
        mark(pid, false);
        showEstimate(r.estimate);
        toast("flag taken back on #" + pid);
      } else {
        const r = await api("POST", "/api/gallery/flag", { proposal_id: pid });
        state.flags.set(pid, r.decision_id);
        mark(pid, true);
        showEstimate(r.estimate);
        toast("flagged #" + pid + " wrong");
      }
    } catch (e) {
      toast(e.message, "error");
    } finally {
      state.busy = false;
    }
  }

  document.addEventListener("keydown", (ev) => {
    if (!$("login").hidden) return;
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const k = ev.key;
    let handled = true;
    if (k === "x" || k === "X") toggleFlag();
    else if (k === "ArrowRight" || k === "l") select(state.sel + 1);
    else if (k === "ArrowLeft" || k === "h") select(state.sel - 1);
    else if (k === "ArrowDown" || k === "j") select(state.sel + perRow());
    else if (k === "ArrowUp" || k === "k") select(state.sel - perRow());
    else if (k === "n" || k === "N") $("next").click();
    else if (k === "p" || k === "P") $("prev").click();
    else handled = false;
    if (handled) ev.preventDefault();
  });

  boot();
})();
