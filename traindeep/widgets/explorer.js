// A precomputed explorer: pick a value for each control and the panels redraw from the stored grid.
// Plain JavaScript and SVG, no library: the page works without a kernel and without a network.
function tdExplorer(root, spec) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 330, H = 210, L = 52, R = 10, T = 26, B = 36;
  const chosen = spec.controls.map(c => c.values.indexOf(c.value));
  const bar = root.querySelector(".td-controls");
  spec.controls.forEach((control, i) => {
    const label = document.createElement("label");
    label.textContent = control.label + " ";
    const select = document.createElement("select");
    select.name = control.name;
    control.values.forEach((v, j) => {
      const option = document.createElement("option");
      option.value = String(j);
      option.textContent = String(v);
      select.appendChild(option);
    });
    select.value = String(chosen[i]);
    select.addEventListener("change", () => { chosen[i] = Number(select.value); redraw(); });
    label.appendChild(select);
    bar.appendChild(label);
  });
  const figure = root.querySelector(".td-panels");
  const svgs = spec.panels.map(panel => {
    if (panel.kind === "text") return null;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    figure.appendChild(svg);
    return svg;
  });
  function el(svg, name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.appendChild(node);
    return node;
  }
  function frame(svg, panel) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    el(svg, "rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#888"});
    el(svg, "text", {x: W / 2, y: 14, "text-anchor": "middle", "font-size": 11}, panel.title);
    el(svg, "text", {x: W / 2, y: H - 4, "text-anchor": "middle", "font-size": 10}, panel.xlabel);
    el(svg, "text", {x: 11, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 10,
                     transform: `rotate(-90 11 ${(T + H - B) / 2})`}, panel.ylabel);
  }
  // A 2-D path (flat x0, y0, x1, y1, ...) over fixed limits and background curves, clipped to the box.
  let clips = 0;
  function drawPath(svg, panel, flat, colour) {
    frame(svg, panel);
    const [x0, x1] = panel.xlim, [y0, y1] = panel.ylim;
    const px = v => L + (W - L - R) * (v - x0) / (x1 - x0), py = v => T + (H - T - B) * (1 - (v - y0) / (y1 - y0));
    const clip = `${root.id}-clip-${clips++}`;
    const defs = el(svg, "defs", {});
    const region = document.createElementNS(NS, "clipPath");
    region.setAttribute("id", clip);
    defs.appendChild(region);
    el(region, "rect", {x: L, y: T, width: W - L - R, height: H - T - B});
    const line = (pts) => {
      let d = "";
      for (let i = 0; i + 1 < pts.length; i += 2) {
        if (pts[i] === null || pts[i + 1] === null) break;
        d += (d ? " L" : "M") + px(pts[i]).toFixed(1) + "," + py(pts[i + 1]).toFixed(1);
      }
      return d;
    };
    (panel.background || []).forEach(pts => el(svg, "path", {d: line(pts) || "M0,0", fill: "none", stroke: "#ccc",
                                                              "clip-path": `url(#${clip})`}));
    [[x0, x1], [y0, y1]].forEach(([lo, hi], axis) => [lo, (lo + hi) / 2, hi].forEach(t => el(svg, "text",
      axis === 0 ? {x: px(t), y: H - B + 12, "text-anchor": "middle", "font-size": 9}
                 : {x: L - 6, y: py(t) + 3, "text-anchor": "end", "font-size": 9}, String(t))));
    el(svg, "path", {d: line(flat) || "M0,0", fill: "none", stroke: colour, "stroke-width": 1.6, class: "td-line",
                     "clip-path": `url(#${clip})`});
    if (flat.length >= 2 && flat[0] !== null) el(svg, "circle", {cx: px(flat[0]), cy: py(flat[1]), r: 3, fill: colour});
  }
  function drawPanel(svg, panel, ys, colour) {
    frame(svg, panel);
    const finite = ys.filter(y => y !== null && isFinite(y) && (!panel.logy || y > 0));
    const f = panel.logy ? Math.log10 : (y => y);
    let lo = finite.length ? Math.min(...finite.map(f)) : 0, hi = finite.length ? Math.max(...finite.map(f)) : 1;
    if (panel.ylim) { [lo, hi] = panel.ylim.map(f); }
    else if (panel.logy) { const pad = Math.max(0.5, (3 - (hi - lo)) / 2); lo = Math.floor(lo - pad); hi = Math.ceil(hi + pad); }
    else if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
    // Point i sits at x = i + 1, or with `xmax` and `dx` at the middle of its window, (i + 0.5) dx, on 0..xmax.
    const n = ys.length, span = panel.xmax ? [0, panel.xmax] : [1, Math.max(n, 2)];
    const x = i => L + (W - L - R) * ((panel.xmax ? (i + 0.5) * panel.dx : i + 1) - span[0]) / (span[1] - span[0]);
    const y = v => T + (H - T - B) * (1 - (f(v) - lo) / (hi - lo));
    const step = panel.logy ? Math.max(1, Math.ceil((hi - lo) / 6)) : (hi - lo) / 4;
    for (let t = lo; t <= hi + 1e-9; t += step) {
      const ty = T + (H - T - B) * (1 - (t - lo) / (hi - lo));
      el(svg, "line", {x1: L - 4, x2: L, y1: ty, y2: ty, stroke: "#888"});
      el(svg, "text", {x: L - 6, y: ty + 3, "text-anchor": "end", "font-size": 9},
         panel.logy ? `1e${Math.round(t)}` : t.toPrecision(2));
    }
    span.forEach((label, k) => el(svg, "text",
      {x: k ? W - R : L, y: H - B + 12, "text-anchor": "middle", "font-size": 9}, String(label)));
    let d = "";
    ys.forEach((v, i) => {
      if (v === null || !isFinite(v) || (panel.logy && v <= 0)) return;
      d += (d ? " L" : "M") + x(i).toFixed(1) + "," + y(v).toFixed(1);
    });
    el(svg, "path", {d: d || "M0,0", fill: "none", stroke: colour, "stroke-width": 1.6, class: "td-line"});
  }
  function redraw() {
    const start = performance.now();
    const run = spec.runs[chosen.join("|")];
    const notes = [];
    spec.panels.forEach((panel, p) => {
      const colour = panel.colour || "#1f77b4";
      if (panel.kind === "text") notes.push(run ? run[p] : "");
      else if (panel.kind === "xy") drawPath(svgs[p], panel, run ? run[p] : [], colour);
      else drawPanel(svgs[p], panel, run ? run[p] : [], colour);
    });
    root.querySelector(".td-note").textContent = notes.join(" ");
    root.querySelector(".td-title").textContent =
      spec.controls.map((c, i) => `${c.label} ${c.values[chosen[i]]}`).join(", ");
    void root.getBoundingClientRect();  // force style and layout, so the time includes them, not only the JS
    root.dataset.redrawMs = (performance.now() - start).toFixed(2);
    root.dataset.redraws = String(Number(root.dataset.redraws || 0) + 1);
  }
  redraw();
}
