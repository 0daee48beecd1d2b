// How a picture becomes the model's 28x28 input, in the browser: a port of digitlab's Python preparation
// (data/images.py prepare_image and prepare_whole, data/folders.py squash), step for step, so that the static
// page answers what `digitlab predict` answers for the same drawing. Where Python works in float32 (numpy) the
// port rounds each operation to float32 (Math.fround); Pillow's resampling (8-bit fixed point, or float images
// accumulated in double) and numpy's pairwise sums are reproduced as those libraries compute them.
// tests/test_web_page.py checks the port against the Python on a few hundred varied pictures (in chromium,
// and under node for every kind of preparation).
"use strict";

(function (root) {
  const WORK_SIDE = 160;      // images.WORK_SIDE: larger pictures are reduced to this long side first
  const INK_THRESHOLD = 0.25; // images.INK_THRESHOLD
  const MIN_CONTRAST = 0.15;  // images.MIN_CONTRAST
  const MIN_INK_PIXELS = 4;   // images.MIN_INK_PIXELS
  const STROKE_SIDE = 80;     // images.STROKE_SIDE
  const MNIST_STROKE = 1.84;  // images.MNIST_STROKE
  const f32 = Math.fround;

  class BlankImage extends Error {}

  /** Python's round(): halves to even. */
  function pyRound(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // ---- Pillow's resampling (libImaging/Resample.c) ----
  const sinc = (x) => (x === 0.0 ? 1.0 : Math.sin(x * Math.PI) / (x * Math.PI));
  const FILTERS = {
    box: [0.5, (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0)],
    bilinear: [1.0, (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; }],
    bicubic: [2.0, (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }],
    lanczos: [3.0, (x) => (-3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0)],
  };

  function coefficients(inSize, outSize, filterName) {
    const [baseSupport, filter] = FILTERS[filterName];
    const scale = inSize / outSize;
    const filterscale = scale < 1.0 ? 1.0 : scale;
    const support = baseSupport * filterscale;
    const out = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1.0 / filterscale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      const k = new Float64Array(Math.max(xmax, 0));
      let ww = 0.0;
      for (let x = 0; x < xmax; x++) {
        k[x] = filter((x + xmin - center + 0.5) * ss);
        ww += k[x];
      }
      if (ww !== 0.0) for (let x = 0; x < xmax; x++) k[x] /= ww;
      out.push([xmin, k]);
    }
    return out;
  }

  const PRECISION = 2 ** 22; // Pillow's PRECISION_BITS = 32 - 8 - 2
  const fixed = (k) => Int32Array.from(k, (v) => (v < 0 ? Math.trunc(-0.5 + v * PRECISION) : Math.trunc(0.5 + v * PRECISION)));
  const clip8 = (s) => Math.min(255, Math.max(0, Math.floor(s / PRECISION)));

  /** One pass of Pillow's separable resampling along x (horizontal) or y; `bytes`: an 8-bit image. */
  function pass(img, size, filterName, horizontal, bytes) {
    const { w, h, data } = img;
    const outW = horizontal ? size : w, outH = horizontal ? h : size;
    const out = bytes ? new Uint8Array(outW * outH) : new Float32Array(outW * outH);
    const coeffs = coefficients(horizontal ? w : h, size, filterName).map(([m, k]) => [m, bytes ? fixed(k) : k]);
    for (let yy = 0; yy < outH; yy++) {
      for (let xx = 0; xx < outW; xx++) {
        const [start, k] = coeffs[horizontal ? xx : yy];
        let s = bytes ? PRECISION / 2 : 0.0;
        for (let i = 0; i < k.length; i++) {
          s += data[horizontal ? yy * w + start + i : (start + i) * w + xx] * k[i];
        }
        out[yy * outW + xx] = bytes ? clip8(s) : s; // a Float32Array rounds to float32 as Pillow's float image
      }
    }
    return { w: outW, h: outH, data: out };
  }

  /** Pillow's Image.resize((outW, outH), filter) of a grey image ("L": Uint8Array; "F": Float32Array). */
  function resize(img, outW, outH, filterName) {
    const bytes = img.data instanceof Uint8Array;
    if (outW === img.w && outH === img.h) return { w: outW, h: outH, data: img.data.slice() };
    // Pillow 13 runs the vertical pass first where the height shrinks by over twice what the width does
    const verticalFirst = img.h - outH > 0 && img.h - outH > (img.w - outW) * 2;
    let out = img;
    if (verticalFirst && outH !== img.h) out = pass(out, outH, filterName, false, bytes);
    if (outW !== img.w) out = pass(out, outW, filterName, true, bytes);
    if (!verticalFirst && outH !== img.h) out = pass(out, outH, filterName, false, bytes);
    return out;
  }

  // ---- numpy's arithmetic where it decides something ----
  /** numpy's sum of float32 values: pairwise, in float32 (numpy's pairwise_sum, blocks of 8 and 128). */
  function pairwiseSum(a, start = 0, n = a.length) {
    if (n < 8) {
      let res = 0;
      for (let i = 0; i < n; i++) res = f32(res + a[start + i]);
      return res;
    }
    if (n <= 128) {
      const r = Array.from({ length: 8 }, (_, j) => a[start + j]);
      let i = 8;
      for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[start + i + j]);
      let res = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
      for (; i < n; i++) res = f32(res + a[start + i]);
      return res;
    }
    let n2 = Math.floor(n / 2);
    n2 -= n2 % 8;
    return f32(pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2));
  }

  function rowSums(img) { // img.sum(1): numpy sums each contiguous row pairwise
    return Float32Array.from({ length: img.h }, (_, y) => pairwiseSum(img.data, y * img.w, img.w));
  }

  function colSums(img) { // img.sum(0): numpy adds the rows one after another
    const out = new Float32Array(img.w);
    for (let y = 0; y < img.h; y++) for (let x = 0; x < img.w; x++) out[x] = f32(out[x] + img.data[y * img.w + x]);
    return out;
  }

  /** numpy's percentile ('linear') of float32 values: indexes and weight as numpy's _quantile computes them. */
  function quantileIndexes(n, q) {
    const v = (n - 1) * (q / 100);
    const top = v >= n - 1;
    const i = top ? n - 1 : Math.trunc(v);
    return [i, top ? i : i + 1, top ? v + 1 : v - i];
  }

  /** np.percentile(a, q) for one plain number q: computed in float32, as numpy does for a float32 array. */
  function percentile32(values, q) {
    const s = Float32Array.from(values).sort();
    const [i, j, t] = quantileIndexes(s.length, q);
    const a = s[i], b = s[j], d = f32(b - a);
    return t >= 0.5 ? f32(b - f32(d * f32(1 - t))) : f32(a + f32(d * f32(t)));
  }

  /** np.percentile(a, [q, ...]) for a list of q: the weights make the result float64. */
  function percentiles64(values, qs) {
    const s = Float32Array.from(values).sort();
    return qs.map((q) => {
      const [i, j, t] = quantileIndexes(s.length, q);
      const a = s[i], b = s[j], d = f32(b - a);
      return t >= 0.5 ? b - d * (1 - t) : a + d * t;
    });
  }

  // ---- pictures to grey levels ----
  /** RGBA bytes -> Pillow's "L" (ITU-R 601-2 luma in fixed point); transparent parts over white paper. */
  function luma(rgba, w, h, overWhite) {
    const out = new Uint8Array(w * h);
    let composite = false;
    if (overWhite) for (let i = 3; i < rgba.length; i += 4) if (rgba[i] < 255) { composite = true; break; }
    for (let p = 0, i = 0; p < w * h; p++, i += 4) {
      let r = rgba[i], g = rgba[i + 1], b = rgba[i + 2];
      if (composite) { // Pillow's alpha_composite over opaque white
        const a = rgba[i + 3];
        const blend = (c) => { const t = (c * a + 255 * (255 - a)) * 128 + (0x80 << 7); return (((t >> 8) + t) >> 8) >> 7; };
        r = blend(r); g = blend(g); b = blend(b);
      }
      out[p] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    }
    return { w, h, data: out };
  }

  /** images.to_grey: grey in [0, 1] (float32), reduced to at most WORK_SIDE with Pillow's box filter. */
  function toGrey(rgba, w, h) {
    let img = luma(rgba, w, h, true);
    if (Math.max(w, h) > WORK_SIDE) {
      const f = WORK_SIDE / Math.max(w, h);
      img = resize(img, Math.max(1, pyRound(w * f)), Math.max(1, pyRound(h * f)), "box");
    }
    return { w: img.w, h: img.h, data: Float32Array.from(img.data, (v) => f32(v / 255.0)) };
  }

  // ---- images.prepare_image, step for step ----
  function blockLevels(grey, q) {
    const B = 4, { w, h } = grey, bh = Math.floor(h / B), bw = Math.floor(w / B);
    const grid = new Float32Array(B * B), cell = new Float32Array(bh * bw);
    for (let bi = 0; bi < B; bi++) {
      for (let bj = 0; bj < B; bj++) {
        for (let y = 0; y < bh; y++) cell.set(grey.data.subarray((bi * bh + y) * w + bj * bw, (bi * bh + y) * w + bj * bw + bw), y * bw);
        grid[bi * B + bj] = percentile32(cell, q);
      }
    }
    const clamp = (v) => Math.min(Math.max(v, 0), B - 1);
    const median = new Float32Array(B * B);
    for (let i = 0; i < B; i++) {
      for (let j = 0; j < B; j++) {
        const nine = [];
        for (let di = -1; di <= 1; di++) for (let dj = -1; dj <= 1; dj++) nine.push(grid[clamp(i + di) * B + clamp(j + dj)]);
        median[i * B + j] = Float32Array.from(nine).sort()[4];
      }
    }
    return resize({ w: B, h: B, data: median }, w, h, "bilinear").data;
  }

  function removeSpecks(ink, w, h) {
    const on = (x, y) => (x >= 0 && y >= 0 && x < w && y < h && ink[y * w + x] > 0 ? 1 : 0);
    const out = new Float32Array(w * h);
    let kept = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let n = -on(x, y);
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) n += on(x + dx, y + dy);
        if (n >= 2) { kept += 1; out[y * w + x] = ink[y * w + x]; }
      }
    }
    if (kept < MIN_INK_PIXELS) throw new BlankImage("no digit found: only a few scattered dots stand out from the background. Draw or photograph a digit with clear contrast.");
    return out;
  }

  function inkMap(grey) {
    const { w, h, data } = grey;
    const sub = [];
    for (let y = 0; y < h; y += 2) for (let x = 0; x < w; x += 2) sub.push(data[y * w + x]);
    const [lo, paper, hi] = percentiles64(sub, [1, 50, 99]);
    const light = hi - paper < paper - lo || (hi - lo < 1e-6 && paper > 0.5);
    const q = light ? 90 : 10;
    const background = Math.min(w, h) >= 48 ? blockLevels(grey, q) : new Float32Array(w * h).fill(percentile32(data, q));
    const ink = Float32Array.from(data, (g, i) => (light ? background[i] - g : g - background[i]));
    const strongest = ink.length ? percentile32(ink, 99.9) : 0;
    if (strongest < MIN_CONTRAST) throw new BlankImage("no digit found: the image is blank (no ink stands out from the background). Draw or photograph a digit with clear contrast.");
    for (let i = 0; i < ink.length; i++) {
      const v = Math.min(Math.max(f32(ink[i] / strongest), 0), 1);
      ink[i] = v < INK_THRESHOLD ? 0 : v;
    }
    return { w, h, data: removeSpecks(ink, w, h) };
  }

  function inkBox(ink, trim = 0.003) {
    const span = (mass) => {
      const total = pairwiseSum(mass);
      if (total <= 0) throw new BlankImage("no digit found: no ink is left once the background is removed.");
      let c = 0, start = -1, end = mass.length; // np.searchsorted: the first place where the share reaches it
      for (let i = 0; i < mass.length; i++) {
        c = f32(c + mass[i]);
        const share = f32(c / total);
        if (start < 0 && share >= trim) start = i;
        if (end === mass.length && share >= 1 - trim) end = i;
      }
      return [start, Math.min(end + 1, mass.length)];
    };
    return [span(rowSums(ink)), span(colSums(ink))];
  }

  function crop(img, [r0, r1], [c0, c1]) {
    const w = c1 - c0, h = r1 - r0, out = new Float32Array(w * h);
    for (let y = 0; y < h; y++) out.set(img.data.subarray((r0 + y) * img.w + c0, (r0 + y) * img.w + c1), y * w);
    return { w, h, data: out };
  }

  function strokeWidth(img) { // 2 * area / perimeter of the pixels over 0.5
    const { w, h, data } = img;
    const on = (x, y) => (x >= 0 && y >= 0 && x < w && y < h && data[y * w + x] > 0.5 ? 1 : 0);
    let area = 0, perimeter = 0;
    for (let y = -1; y < h; y++) {
      for (let x = -1; x < w; x++) {
        area += on(x, y);
        perimeter += Math.abs(on(x, y + 1) - on(x, y)) + Math.abs(on(x + 1, y) - on(x, y));
      }
    }
    return (2 * area) / Math.max(perimeter, 1.0);
  }

  function rankFilter(img, size, pick) { // Pillow's MinFilter/MaxFilter: the edge pixels repeated outward
    const { w, h, data } = img, r = size >> 1, out = new Float32Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = data[y * w + x];
        for (let dy = -r; dy <= r; dy++) {
          const yy = Math.min(Math.max(y + dy, 0), h - 1);
          for (let dx = -r; dx <= r; dx++) v = pick(v, data[yy * w + Math.min(Math.max(x + dx, 0), w - 1)]);
        }
        out[y * w + x] = v;
      }
    }
    return { w, h, data: out };
  }

  const countOver = (img, t) => img.data.reduce((n, v) => n + (v > t ? 1 : 0), 0);

  function evenStrokes(img) {
    const f = STROKE_SIDE / Math.max(img.w, img.h);
    const W = Math.max(1, pyRound(img.w * f)), H = Math.max(1, pyRound(img.h * f));
    if (f >= 1) {
      const up = resize(img, W, H, "bicubic");
      up.data = up.data.map((v) => Math.min(Math.max(v, 0), 1));
      return up;
    }
    let arr = resize(img, W, H, "box");
    let top = 0;
    for (const v of arr.data) top = Math.max(top, v);
    top = Math.max(top, 1e-6);
    arr.data = arr.data.map((v) => f32(v / top));
    const target = (MNIST_STROKE * STROKE_SIDE) / 20;
    let width = strokeWidth(arr);
    if (width < 0.6 * target) {
      const inked = Float32Array.from(arr.data.filter((v) => v > 0)).sort();
      const n = inked.length, m = n % 2 ? inked[(n - 1) / 2] : f32(f32(inked[n / 2 - 1] + inked[n / 2]) / 2);
      const med = Math.max(m, 1e-6);
      arr.data = arr.data.map((v) => Math.min(Math.max(f32(v / med), 0), 1));
      width = strokeWidth(arr);
      const k = pyRound(target - width) | 1;
      arr = rankFilter(arr, Math.min(k, 15), Math.max);
    } else if (width > 1.8 * target) {
      const k = pyRound((width - target) / 2) | 1;
      const thinned = rankFilter(arr, Math.min(k, 15), Math.min);
      if (countOver(thinned, 0.5) > 0.25 * countOver(arr, 0.5)) arr = thinned;
    }
    return arr;
  }

  function centreByMass(box) {
    const out = new Float32Array(28 * 28), { w, h } = box;
    const total = pairwiseSum(box.data);
    let cy = h / 2, cx = w / 2;
    if (total > 0) {
      const rows = rowSums(box), cols = colSums(box);
      let sy = 0, sx = 0;
      rows.forEach((v, i) => { sy += i * v; });
      cols.forEach((v, i) => { sx += i * v; });
      cy = sy / total;
      cx = sx / total;
    }
    const top = Math.min(Math.max(pyRound(14 - cy), 0), 28 - h);
    const left = Math.min(Math.max(pyRound(14 - cx), 0), 28 - w);
    for (let y = 0; y < h; y++) out.set(box.data.subarray(y * w, y * w + w), (top + y) * 28 + left);
    return out;
  }

  function inMnistForm(grey) { // images.in_mnist_form: a picture MNIST's preparation already made
    if (grey.w !== 28 || grey.h !== 28) return false;
    const d = grey.data, rows = [], cols = [];
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) if (d[y * 28 + x]) { rows.push(y); cols.push(x); }
    if (!rows.length) return false;
    if (Math.max(...rows) - Math.min(...rows) >= 20 || Math.max(...cols) - Math.min(...cols) >= 20) return false;
    const mass = pairwiseSum(d);
    let sy = 0, sx = 0;
    rowSums(grey).forEach((v, i) => { sy += i * v; });
    colSums(grey).forEach((v, i) => { sx += i * v; });
    return Math.abs(sy / mass - 14) <= 0.5 + 1e-9 && Math.abs(sx / mass - 14) <= 0.5 + 1e-9;
  }

  /** images.prepare_image: a drawing or photo of a digit made to look like MNIST's. Throws BlankImage. */
  function handwriting(rgba, w, h) {
    const grey = toGrey(rgba, w, h);
    if (inMnistForm(grey)) return grey.data;
    const ink = inkMap(grey);
    const [rows, cols] = inkBox(ink);
    const even = evenStrokes(crop(ink, rows, cols));
    const scale = 20.0 / Math.max(even.w, even.h);
    const small = resize(even, Math.max(1, pyRound(even.w * scale)), Math.max(1, pyRound(even.h * scale)), "lanczos");
    small.data = small.data.map((v) => Math.min(Math.max(v, 0), 1));
    if (!small.data.some((v) => v !== 0)) throw new BlankImage("no digit found: the ink is too faint to make out a digit. Use darker ink or more contrast.");
    return centreByMass(small);
  }

  /** images.prepare_whole: a whole object, squashed to 28x28, inverted when its border is light. */
  function whole(rgba, w, h) {
    let grey = toGrey(rgba, w, h);
    if (grey.w !== 28 || grey.h !== 28) grey = resize(grey, 28, 28, "bilinear");
    const d = grey.data, border = [];
    for (let i = 0; i < 28; i++) border.push(d[i], d[27 * 28 + i]);
    for (let i = 0; i < 28; i++) border.push(d[i * 28], d[i * 28 + 27]);
    const light = pairwiseSum(Float32Array.from(border)) / border.length > 0.5;
    return d.map((v) => Math.min(Math.max(light ? f32(1.0 - v) : v, 0), 1));
  }

  /** data/folders.squash: exactly as the folder loader read the training images (Pillow's "L", bilinear). */
  function folder(rgba, w, h) {
    let img = luma(rgba, w, h, false);
    if (w !== 28 || h !== 28) img = resize(img, 28, 28, "bilinear");
    return Float32Array.from(img.data, (v) => f32(v / 255.0));
  }

  const KINDS = { handwriting, whole, folder };

  /** The model's input (Float32Array of 28*28 in [0, 1]) from RGBA bytes, as the model's preparation says. */
  function prepare(preparation, rgba, w, h) {
    const kind = KINDS[preparation.kind];
    if (!kind) throw new Error(`unknown input preparation ${preparation.kind}; export the model again with this digitlab.`);
    return kind(rgba, w, h);
  }

  const api = { prepare, BlankImage, resize, pairwiseSum, percentile32, pyRound };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.DigitlabPrepare = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
