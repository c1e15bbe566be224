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
  const svgs = spec.panels.map(() => {
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
  function drawPanel(svg, panel, ys, colour) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const finite = ys.filter(y => y !== null && isFinite(y) && (!panel.logy || y > 0));
    const f = panel.logy ? Math.log10 : (y => y);
    let lo = finite.length ? Math.min(...finite.map(f)) : 0, hi = finite.length ? Math.max(...finite.map(f)) : 1;
    if (panel.logy) { const pad = Math.max(0.5, (3 - (hi - lo)) / 2); lo = Math.floor(lo - pad); hi = Math.ceil(hi + pad); }
    else if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
    const n = ys.length, x = i => L + (W - L - R) * (n > 1 ? i / (n - 1) : 0.5);
    const y = v => T + (H - T - B) * (1 - (f(v) - lo) / (hi - lo));
    el(svg, "rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#888"});
    el(svg, "text", {x: W / 2, y: 14, "text-anchor": "middle", "font-size": 11}, panel.title);
    el(svg, "text", {x: W / 2, y: H - 4, "text-anchor": "middle", "font-size": 10}, panel.xlabel);
    el(svg, "text", {x: 11, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 10,
                     transform: `rotate(-90 11 ${(T + H - B) / 2})`}, panel.ylabel);
    const step = panel.logy ? Math.max(1, Math.ceil((hi - lo) / 6)) : (hi - lo) / 4;
    for (let t = lo; t <= hi + 1e-9; t += step) {
      const ty = T + (H - T - B) * (1 - (t - lo) / (hi - lo));
      el(svg, "line", {x1: L - 4, x2: L, y1: ty, y2: ty, stroke: "#888"});
      el(svg, "text", {x: L - 6, y: ty + 3, "text-anchor": "end", "font-size": 9},
         panel.logy ? `1e${Math.round(t)}` : t.toPrecision(2));
    }
    [0, n - 1].forEach(i => el(svg, "text", {x: x(i), y: H - B + 12, "text-anchor": "middle", "font-size": 9},
                              String(i + 1)));
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
    spec.panels.forEach((panel, p) => drawPanel(svgs[p], panel, run ? run[p] : [], panel.colour || "#1f77b4"));
    root.querySelector(".td-title").textContent =
      spec.controls.map((c, i) => `${c.label} ${c.values[chosen[i]]}`).join(", ");
    root.dataset.redrawMs = (performance.now() - start).toFixed(2);
    root.dataset.redraws = String(Number(root.dataset.redraws || 0) + 1);
  }
  redraw();
}
