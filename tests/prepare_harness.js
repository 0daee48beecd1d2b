// tests/test_web_page.py's harness: prepare.js under node on pictures written by Python. Input: a file of
// u32 count, then per picture u32 width, u32 height and its RGBA bytes. Output: per picture and per kind
// (handwriting, whole, folder) 784 float32s, or 784 x -1 where prepare.js found it blank.
"use strict";
const fs = require("fs");
const [prepareJs, input, output] = process.argv.slice(2);
const P = require(prepareJs);
const buf = fs.readFileSync(input);
const out = [];
let off = 4;
for (let k = 0; k < buf.readUInt32LE(0); k++) {
  const w = buf.readUInt32LE(off), h = buf.readUInt32LE(off + 4);
  const rgba = new Uint8Array(buf.buffer, buf.byteOffset + off + 8, w * h * 4);
  off += 8 + w * h * 4;
  for (const kind of ["handwriting", "whole", "folder"]) {
    let x;
    try {
      x = P.prepare({ kind }, rgba, w, h);
    } catch (e) {
      if (!(e instanceof P.BlankImage)) throw e;
      x = new Float32Array(784).fill(-1);
    }
    out.push(Buffer.from(new Float32Array(x).buffer));
  }
}
fs.writeFileSync(output, Buffer.concat(out));
