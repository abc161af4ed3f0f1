// Exit 0 if node_modules/ holds exactly what package-lock.json pins (same
// packages, versions and integrity hashes as npm ci recorded), else 1.
// Used by `make setup` to skip `npm ci --prefix tests/idp` when up to date.
const path = require('node:path');

const list = (file) => {
  const { packages } = require(path.join(__dirname, file));
  return JSON.stringify(
    Object.keys(packages).filter((k) => k !== '').sort()
      .map((k) => [k, packages[k].version, packages[k].integrity]),
  );
};

try {
  process.exit(list('package-lock.json') === list('node_modules/.package-lock.json') ? 0 : 1);
} catch {
  process.exit(1);
}
