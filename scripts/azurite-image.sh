#!/usr/bin/env bash
# Builds the Azurite image the container path of the tests uses on a machine without registry access:
# the pinned npm Azurite (package.json, installed by `npm ci`) on this machine's Node, in a root
# filesystem of its own (node, the shared libraries `ldd` lists, the dynamic loader, Azurite with its
# production dependencies, a static busybox for /bin/sh), imported with `docker import`. No registry is
# contacted. It offers the same commands as Microsoft's image (`azurite`, `azurite-blob`, ...) on PATH,
# so the tests start either image the same way. Quiet, and quick, when the image is already there.
#
# The tag carries the patch (patches/azurite+<version>.patch, applied by npm ci): <version>-valet.<first 10 hex
# of the patch's sha256>, as valet/local/emulator.py's patched_version computes it.
#
#   bash scripts/azurite-image.sh            # builds valet-local/azurite:<pinned version>-valet.<digest> if missing
#   VALET_TEST_AZURITE_IMAGE=name:tag bash scripts/azurite-image.sh   # another tag
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(node -p 'require("./package.json").dependencies.azurite')"
patch="patches/azurite+$version.patch"
[ -f "$patch" ] || { echo "azurite image: $patch is missing" >&2; exit 1; }
image="${VALET_TEST_AZURITE_IMAGE:-valet-local/azurite:$version-valet.$(sha256sum "$patch" | cut -c1-10)}"
docker image inspect "$image" >/dev/null 2>&1 && exit 0

say() { echo "azurite image: $*" >&2; }
installed="$(node -p 'require("./node_modules/azurite/package.json").version' 2>/dev/null || true)"
[ "$installed" = "$version" ] || { say "node_modules has azurite '${installed:-none}', package.json pins $version: run npm ci"; exit 1; }
grep -q createAuthorizesBlocks node_modules/azurite/dist/src/blob/authentication/OperationBlobSASPermission.js ||
  { say "node_modules/azurite lacks valet's patch ($patch): run npm ci"; exit 1; }
busybox="${VALET_BUSYBOX:-/bin/busybox}"
if ! [ -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  say "needs a statically linked busybox at $busybox (Debian: apt-get install busybox-static)"; exit 1
fi
node="$(readlink -f "$(command -v node)")"
say "building $image from npm azurite $version and $node ($(node --version))..."
started=$SECONDS
root="$(mktemp -d "${TMPDIR:-/tmp}/valet-azurite-rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT

copy() { mkdir -p "$root$(dirname "$2")"; cp -L "$1" "$root$2"; }
copy "$node" /usr/bin/node
ldd "$node" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  copy "$lib" "$lib"
done

# Azurite and the packages it needs at run time, found the way Node resolves them (nearest node_modules).
node - "$root/opt/azurite" <<'EOF'
const fs = require("fs"), path = require("path");
const project = process.cwd(), target = process.argv[2], seen = new Set();
function locate(name, from) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", name);
    if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
    if (dir === project) return null;
  }
}
function add(dir) {
  if (seen.has(dir)) return;
  seen.add(dir);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  for (const name of Object.keys(pkg.dependencies || {})) {
    const found = locate(name, dir);
    if (!found) throw new Error(`${pkg.name} needs ${name}, which is not installed`);
    add(found);
  }
  for (const name of Object.keys(pkg.optionalDependencies || {})) {
    const found = locate(name, dir);
    if (found) add(found);
  }
}
add(path.join(project, "node_modules", "azurite"));
for (const dir of seen) {
  const rel = path.relative(project, dir);
  fs.cpSync(dir, path.join(target, rel), {
    recursive: true, dereference: true,
    filter: (src) => src === dir || !src.startsWith(path.join(dir, "node_modules") + path.sep) &&
      src !== path.join(dir, "node_modules"),
  });
}
console.error(`azurite image: ${seen.size} packages`);
EOF

mkdir -p "$root/bin" "$root/usr/local/bin" "$root/tmp" "$root/etc" "$root/root" "$root/data"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in sh ls cat env mkdir rm ps sleep; do ln -s busybox "$root/bin/$applet"; done
node -e '
  const bins = require("./node_modules/azurite/package.json").bin;
  for (const [name, rel] of Object.entries(bins)) {
    const file = `${process.argv[1]}/usr/local/bin/${name}`;
    require("fs").writeFileSync(file,
      `#!/bin/sh\nexec /usr/bin/node /opt/azurite/node_modules/azurite/${rel.replace(/^\.\//, "")} "$@"\n`, {mode: 0o755});
  }' "$root"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"

tar -C "$root" --numeric-owner --owner=0 --group=0 -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'WORKDIR /opt/azurite' \
  --change 'EXPOSE 10000 10001 10002' \
  --change 'CMD ["azurite", "-l", "/data", "--blobHost", "0.0.0.0", "--queueHost", "0.0.0.0", "--tableHost", "0.0.0.0"]' \
  --message "valet: built locally by scripts/azurite-image.sh from npm azurite $version with $patch on node $(node --version)" \
  - "$image" >/dev/null
got="$(docker run --rm --network none "$image" azurite --version)"
[ "$got" = "$version" ] || { say "the new image says azurite '$got', expected $version"; docker rmi "$image" >/dev/null; exit 1; }
say "built $image in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
