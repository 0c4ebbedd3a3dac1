#!/usr/bin/env bash
# Owns: building (or finding cached) the Kubernetes control-plane binaries the
# integration tests run: kube-apiserver and kube-controller-manager v1.20.2
# compiled from Debian bookworm's `kubernetes` source package with Debian's
# golang-1.19, plus Debian's etcd-server binary.  Also makes sure Debian's
# `prometheus`/`promtool` are installed (skip with LLMOPS_SKIP_PROMETHEUS=1).
#
# Everything comes from Debian's package registry through a *private* apt
# configuration (own sources list, lists and cache directories under the
# scratch dir); the system apt configuration is never modified.
#
# Layout (cache dir = ${LLMOPS_K8S_CACHE:-$HOME/.cache/llmops-actions/k8s}):
#   $CACHE/<STAMP>/bin/{kube-apiserver,kube-controller-manager,etcd}
#   $CACHE/<STAMP>/BUILD_INFO
#   $CACHE/current -> <STAMP>          (symlink, swapped atomically)
#   $CACHE/env                          (KEY=VALUE lines, LLMOPS_K8S_BIN_DIR=...)
# A build happens in $CACHE/.work.* and the finished bin dir is renamed into
# place in one rename(2), so a half-done build never looks done.  A lock file
# serialises concurrent runs.  Re-running with a complete cache takes seconds.
#
# Usage: bash tests/infra/build_control_plane.sh        # prints the bin dir
#        LLMOPS_K8S_REBUILD=1 bash tests/infra/build_control_plane.sh
set -euo pipefail

K8S_VERSION=1.20.2
RECIPE=r1   # bump when the recipe changes, forces a rebuild
STAMP="kube-${K8S_VERSION}-go1.19-${RECIPE}"
CACHE="${LLMOPS_K8S_CACHE:-$HOME/.cache/llmops-actions/k8s}"
FINAL="$CACHE/$STAMP"
BINS=(kube-apiserver kube-controller-manager etcd)

log() { echo "[build_control_plane] $*" >&2; }

ensure_prometheus() {
    [[ "${LLMOPS_SKIP_PROMETHEUS:-0}" == 1 ]] && return 0
    if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
        return 0
    fi
    log "installing Debian's prometheus (apt-get install -y prometheus)"
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    # the service is never started by us; policy-rc.d keeps dpkg from trying
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2 \
        || { $sudo apt-get update >&2 && $sudo env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends prometheus >&2; }
    command -v prometheus >/dev/null && command -v promtool >/dev/null
}

is_complete() {
    local b
    for b in "${BINS[@]}"; do [[ -x "$1/bin/$b" ]] || return 1; done
    [[ -f "$1/BUILD_INFO" ]]
}

publish() {
    # atomically point `current` at FINAL and (re)write the env file
    local tmp
    tmp="$CACHE/.current.$$"
    ln -sfn "$STAMP" "$tmp" && mv -T "$tmp" "$CACHE/current"
    tmp="$CACHE/.env.$$"
    printf 'LLMOPS_K8S_BIN_DIR=%s\nLLMOPS_K8S_VERSION=%s\n' "$FINAL/bin" "$K8S_VERSION" >"$tmp"
    mv -f "$tmp" "$CACHE/env"
}

build() {
    local work="$1" root="$1/root" dl="$1/dl" apt="$1/apt"
    mkdir -p "$root" "$dl" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d"

    # Private sources list: the system's Debian stanzas (same mirror, same
    # keyring), pinned to bookworm, with deb-src added.
    local src_out="$apt/sources.list.d/debian.sources"
    : >"$src_out"
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        awk 'BEGIN{RS="";ORS="\n\n"}
             /debian-archive-keyring/ && !/security/ {
                 gsub(/Types:[^\n]*/, "Types: deb deb-src");
                 gsub(/Suites:[^\n]*/, "Suites: bookworm"); print }' \
            /etc/apt/sources.list.d/*.sources >>"$src_out"
    fi
    if [[ ! -s "$src_out" ]]; then
        # one-line format fallback: reuse the system's first Debian mirror
        local uri
        uri=$(grep -hE '^deb (\[[^]]*\] )?[a-z]+://[^ ]+/debian/? ' /etc/apt/sources.list \
                /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v security | head -n1 \
              | sed -E 's/^deb (\[[^]]*\] )?([^ ]+) .*/\2/' || true)
        [[ -n "$uri" ]] || { log "no Debian mirror found in /etc/apt"; return 1; }
        printf 'Types: deb deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$uri" >"$src_out"
    fi
    local A=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources.list.d"
             -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
             -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q)
    log "apt-get update (private lists)"
    apt-get "${A[@]}" update >&2
    log "downloading Debian packages"
    (cd "$dl" && apt-get "${A[@]}" download etcd-server golang-1.19-go golang-1.19-src \
        rsync libpopt0 libxxhash0 golang-github-modern-go-reflect2-dev >&2)
    (cd "$dl" && apt-get "${A[@]}" source --download-only kubernetes >&2)
    local deb
    for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$root"; done

    log "unpacking kubernetes source"
    local src="$work/src"
    if command -v dpkg-source >/dev/null; then
        (cd "$work" && dpkg-source -x "$dl"/kubernetes_*.dsc src >&2)
    else  # no dpkg-dev: unpack orig + debian tarballs and apply the quilt series
        mkdir -p "$src"
        tar -xzf "$dl"/kubernetes_*.orig.tar.gz -C "$src" --strip-components=1
        tar -xJf "$dl"/kubernetes_*.debian.tar.xz -C "$src"
        local p
        while read -r p; do
            [[ -z "$p" || "$p" == \#* ]] || patch -d "$src" -p1 -s <"$src/debian/patches/$p"
        done <"$src/debian/patches/series"
    fi
    # vendored reflect2 1.0.1 segfaults under Go 1.19 (UnsafeIterate);
    # swap in Debian's reflect2 1.0.2 sources
    local r2="$src/vendor/github.com/modern-go/reflect2"
    find "$r2" -maxdepth 1 -name '*.go' -delete
    cp "$root"/usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
       "$root"/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$r2"/

    log "compiling kube-apiserver and kube-controller-manager (several minutes)"
    local goroot="$root/usr/lib/go-1.19"
    (
        cd "$src"
        export GOROOT="$goroot" GOPATH="$work/gopath" GOCACHE="$work/gocache"
        export PATH="$goroot/bin:$root/usr/bin:$PATH"
        export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on HOME="$work"
        export KUBE_GIT_VERSION="v${K8S_VERSION}" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian
        unset GOBIN
        # `make WHAT=...` first regenerates every generated file of the tree (deepcopy, defaulter, conversion,
        # prerelease-lifecycle, bindata, openapi: several generator passes over all packages). The release
        # tarball already carries all of them except the kube openapi spec (pkg/generated/openapi), so generate
        # only that (`make gen_openapi`) and then compile the two commands with the same build script `make`
        # calls; the binaries are built from the same sources and flags (RECIPE stays r1: caches stay warm).
        # Should that ever fail (a file the release lacks), fall back to the full `make`.
        local t=$SECONDS
        if make gen_openapi >&2 && log "openapi generated in $((SECONDS - t)) s" \
            && hack/make-rules/build.sh cmd/kube-apiserver cmd/kube-controller-manager >&2; then
            log "kube-apiserver and kube-controller-manager built in $((SECONDS - t)) s"
        else
            log "the openapi-only build failed; building with make's full code generation"
            make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
        fi
    )
    local out="$work/out"
    mkdir -p "$out/bin"
    cp "$src/_output/bin/kube-apiserver" "$src/_output/bin/kube-controller-manager" "$out/bin/"
    cp "$root/usr/bin/etcd" "$out/bin/"
    chmod 0755 "$out/bin/"*
    "$out/bin/kube-apiserver" --version >&2
    {
        echo "kubernetes source: $(basename "$dl"/kubernetes_*.dsc)"
        echo "packages: $(cd "$dl" && ls ./*.deb | xargs -n1 basename | tr '\n' ' ')"
        echo "built: $(date -u +%FT%TZ)"
    } >"$out/BUILD_INFO"
    rm -rf "$FINAL"   # only reachable when FINAL was incomplete
    mv -T "$out" "$FINAL"
}

main() {
    mkdir -p "$CACHE"
    ensure_prometheus || { log "prometheus/promtool unavailable"; exit 1; }
    if [[ "${LLMOPS_K8S_REBUILD:-0}" != 1 ]] && is_complete "$FINAL"; then
        publish
        echo "$FINAL/bin"
        return 0
    fi
    exec 9>"$CACHE/.lock"
    flock 9
    if [[ "${LLMOPS_K8S_REBUILD:-0}" == 1 ]] || ! is_complete "$FINAL"; then
        # clear leftovers of interrupted builds (we hold the lock)
        rm -rf "$CACHE"/.work.* "$CACHE"/.current.* "$CACHE"/.env.*
        [[ "${LLMOPS_K8S_REBUILD:-0}" == 1 ]] && rm -rf "$FINAL"
        work=""
        work=$(mktemp -d "$CACHE/.work.XXXXXX")
        trap 'rm -rf "${work:-}"' EXIT
        local t0=$SECONDS
        build "$work"
        log "built in $((SECONDS - t0)) s"
        rm -rf "$work"
        trap - EXIT
    fi
    publish
    echo "$FINAL/bin"
}

main "$@"
