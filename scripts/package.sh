#!/usr/bin/env bash
# Builds the .deb and .rpm packages of the agent and the collector into target/package/, with
# binaries linked against glibc 2.28 (Rocky/Alma Linux 8 and newer, Debian 10 and newer) by
# cargo-zigbuild. Installs its tools when missing: cargo-zigbuild and zig from PyPI, cargo-deb
# and cargo-generate-rpm from crates.io.
#   scripts/package.sh                          release profiles (what to ship)
#   PACKAGE_PROFILE=package-check scripts/package.sh    a quicker build, same layout (the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
glibc=2.28
agent_profile=${PACKAGE_PROFILE:-agent-release}
collector_profile=${PACKAGE_PROFILE:-release}

export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! python3 -c 'import ziglang' 2>/dev/null; then
    echo "installing cargo-zigbuild and zig (PyPI)"
    # Debian 12+ marks its Python as externally managed: a --user install then needs the override.
    python3 -m pip install --quiet --user cargo-zigbuild ziglang 2>/dev/null \
        || python3 -m pip install --quiet cargo-zigbuild ziglang 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages cargo-zigbuild ziglang
fi
for tool in cargo-deb cargo-generate-rpm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "installing $tool (crates.io)"
        cargo install --quiet --locked "$tool"
    fi
done

cargo zigbuild --quiet --target "$triple.$glibc" --profile "$agent_profile" -p b24watch-agent --bin b24watch-agent
cargo zigbuild --quiet --target "$triple.$glibc" --profile "$collector_profile" -p b24watch-collector \
    --bin b24watch-collector
agent="target/$triple/$agent_profile/b24watch-agent"
collector="target/$triple/$collector_profile/b24watch-collector"

# Every versioned glibc symbol the binaries need must exist in glibc 2.28.
for bin in "$agent" "$collector"; do
    highest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
    if [ "$(printf '%s\n%s\n' "$highest" "$glibc" | sort -V | tail -1)" != "$glibc" ]; then
        echo "$bin needs GLIBC_$highest, newer than $glibc" >&2
        exit 1
    fi
    echo "$(basename "$bin"): highest glibc symbol version $highest (limit $glibc)"
done

rm -rf target/package
mkdir -p target/package
"$agent" --print-default-config > target/package/agent.toml
"$collector" --print-default-config > target/package/collector.toml
for pkg in agent collector; do
    profile_var="${pkg}_profile"
    cargo deb --quiet -p "b24watch-$pkg" --no-build --no-strip --target "$triple" --profile "${!profile_var}" \
        -o target/package/
    cargo generate-rpm -p "$pkg" --target "$triple" --profile "${!profile_var}" -o target/package/
done
ls -l target/package/*.deb target/package/*.rpm
