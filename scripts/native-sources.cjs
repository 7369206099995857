// Lists the CPU sources of native/ for binding.gyp (node-gyp has no recursive glob). CUDA sources (.cu) are built
// only by CMake (cmake-js), which is the project's default builder.
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const out = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.cpp')) out.push(path.relative(root, p).split(path.sep).join('/'));
  }
})(path.join(root, 'native'));
process.stdout.write(out.join(' '));
