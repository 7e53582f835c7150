#!/bin/bash
# Build kube-apiserver (+ kube-controller-manager, kube-scheduler) from Debian bookworm's
# `kubernetes` source package (1.20.5+really1.20.2, vendor/ included), fully offline, with
# Debian's golang-go 1.19. Same path as debian/rules: GOPATH mode + `make WHAT=...`
# (make also runs openapi-gen, which a plain `go build` skips -> "undefined: openapi.GetOpenAPIDefinitions").
# Prereqs: apt-get install golang-go dpkg-dev rsync; deb-src lines for the Debian mirror.
set -euo pipefail
WHAT=${WHAT:-cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler}
SRCROOT=${K8S_SRC:-${XDG_CACHE_HOME:-$HOME/.cache}/clustertop-k8s/src}
OUTBIN=${K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/clustertop-k8s/bin}
mkdir -p "$SRCROOT" "$OUTBIN"
# One build at a time per cache: two test runs (or CI beside a session's run) that both find the binaries
# missing would otherwise make over each other's tree (a corrupt .make/go-pkgdeps.mk, seen). The second
# waits, then finds the first one's binaries and has nothing left to do.
exec 9>"$SRCROOT/.build.lock"
flock 9
all_built() { for b in $WHAT; do [ -x "$OUTBIN/$(basename "$b")" ] || return 1; done; }
if [ -z "${K8S_FORCE:-}" ] && all_built; then
  echo "binaries already in $OUTBIN (built while this run waited for the lock)"; exit 0
fi
cd "$SRCROOT"
if [ ! -d k8s ]; then
  apt-get source --download-only kubernetes
  dpkg-source -x kubernetes_*.dsc k8s
fi
cd k8s
# Go >= 1.18 fix: the vendored modern-go/reflect2 v1.0.1 (+ json-iterator 1.1.10) corrupts memory /
# panics (nil deref in reflect2.(*frozenConfig).Type2 while decoding JSON request bodies) when built
# with Debian's go 1.19. Swap in Debian's packaged reflect2 1.0.2 + json-iterator 1.1.12 (the same
# bump upstream Kubernetes made for go1.18).
if ! [ -f vendor/github.com/modern-go/reflect2/go_above_118.go ]; then
  apt-get install -y golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev >/dev/null
  for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    rm -rf "vendor/$pkg"; mkdir -p "vendor/$pkg"
    for f in /usr/share/gocode/src/$pkg/*; do
      case "$f" in *_test.go) ;; *.go|*.s|*/LICENSE) cp "$f" "vendor/$pkg/";; esac
    done
  done
fi
mkdir -p .go/src/k8s.io
[ -L .go/src/k8s.io/kubernetes ] || ln -s ../../.. .go/src/k8s.io/kubernetes
cat > .version-file <<'V'
KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='v1.20.2'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
V
export GOPATH=$PWD/.go CGO_ENABLED=0 GOPROXY=off GOFLAGS= GO111MODULE=off
export KUBE_GIT_VERSION_FILE=$PWD/.version-file GOLDFLAGS="-s -w"
for w in $WHAT; do
  s=$(date +%s)
  env HOME=$SRCROOT/.home make WHAT="$w"
  echo "BUILD-TIME $w $(( $(date +%s) - s ))s"
  cp -f "_output/bin/$(basename $w)" "$OUTBIN/"
done
ls -la "$OUTBIN"
