#!/usr/bin/env bash
# Builds the release artifacts of VERSION into dist/ (`make release VERSION=vX.Y.Z` runs it):
#
#   <cmd>_<VERSION>_<os>_<arch>            every main package under cmd/, for each platform
#   <cmd>_<VERSION>_<os>_<arch>.cdx.json   its CycloneDX SBOM (cyclonedx-gomod app)
#   SHA256SUMS                             sha256sum -c format, over all of the above
#
# Usage: scripts/release.sh vX.Y.Z
#
# The binaries are reproducible: the same source and Go toolchain give byte-identical
# files on any machine and in any checkout directory (no cgo, -trimpath, no VCS stamp,
# stripped, default GOAMD64/GOARM64 levels). The SBOMs carry no timestamp or random serial
# number for the same reason, so a whole dist/ can be rebuilt and compared with a
# published one.
#
# Environment (defaults are what a release uses; tests narrow them):
#   GO         go command (default: go)
#   DIST       output directory, emptied first (default: dist)
#   PLATFORMS  os/arch list (default: "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64")
#   SBOM       0 skips the SBOMs (default: 1)
set -euo pipefail

# Pinned: a newer cyclonedx-gomod may change the SBOM's contents. `go run module@version`
# needs no entry in go.mod and builds the same tool everywhere.
CYCLONEDX_GOMOD=github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0

# Commands under cmd/ that are never shipped (development tools); every other main
# package there is released, so a new command needs no change here.
UNSHIPPED=()

GO=${GO:-go}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
SBOM=${SBOM:-1}

die() {
	printf 'release: %s\n' "$*" >&2
	exit 1
}

VERSION=${1:-}
[[ -n "$VERSION" ]] || die "VERSION is required: make release VERSION=v1.2.3"
# Same rule as version.go's check: the plugin refuses to start with anything else.
[[ "$VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
	die "VERSION=$VERSION is not a semantic version with a leading v (want vMAJOR.MINOR.PATCH or vMAJOR.MINOR.PATCH-PRERELEASE, e.g. v1.2.3 or v1.2.3-rc.1)"

cd "$(dirname "$0")/.."

# The environment must not change what is built: GOFLAGS could add tags or -race,
# CGO_ENABLED=1 would link the host's C library. -mod=readonly: a release never edits
# go.mod or go.sum.
# GOAMD64/GOARM64 are pinned to Go's defaults, which every amd64/arm64 machine runs.
export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOAMD64=v1 GOARM64=v8.0
unset GOEXPERIMENT

module=$("$GO" list -m)
# The plugin reports the root package's Version to Vault; other commands (the gateway)
# print main.version with -version. -X of a symbol a binary lacks is ignored.
ldflags="-s -w -X $module.Version=$VERSION -X main.version=$VERSION"

commands=()
for dir in cmd/*/; do
	name=$(basename "$dir")
	# ${a[@]+...}: an empty array is "unbound" to set -u in bash before 4.4 (macOS).
	for skip in ${UNSHIPPED[@]+"${UNSHIPPED[@]}"}; do
		[[ "$name" == "$skip" ]] && continue 2
	done
	[[ "$("$GO" list -f '{{.Name}}' "./cmd/$name")" == main ]] || continue
	commands+=("$name")
done
((${#commands[@]} > 0)) || die "no main package under cmd/"

# cyclonedx-gomod names the main module by the git tag on HEAD, else by a pseudo-version of
# HEAD; the binaries are built from the work tree. Say so when these are not VERSION.
if git rev-parse --git-dir >/dev/null 2>&1; then
	if [[ "$(git tag --points-at HEAD)" != *"$VERSION"* ]]; then
		printf 'release: note: HEAD is not tagged %s: the SBOMs name this module by a pseudo-version\n' "$VERSION" >&2
	fi
	if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
		printf 'release: note: the work tree has uncommitted changes: they are in the binaries\n' >&2
	fi
fi

rm -rf "$DIST"
mkdir -p "$DIST"

printf 'release: %s with %s for %s\n' "$VERSION" "$("$GO" version)" "$PLATFORMS"
for platform in $PLATFORMS; do
	goos=${platform%/*}
	goarch=${platform#*/}
	for name in "${commands[@]}"; do
		artifact="${name}_${VERSION}_${goos}_${goarch}"
		printf 'release: %s\n' "$artifact"
		GOOS=$goos GOARCH=$goarch "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" \
			-o "$DIST/$artifact" "./cmd/$name"
		if [[ "$SBOM" != 0 ]]; then
			# app analyses the source for the same GOOS/GOARCH/CGO_ENABLED as the build, so
			# the SBOM lists the modules linked into this binary and no others. The target
			# goes to the tool through -exec: set on go run itself, it would build the tool
			# for the target too, and a darwin tool does not run here.
			"$GO" run -exec "env GOOS=$goos GOARCH=$goarch" "$CYCLONEDX_GOMOD" app \
				-json -licenses -std -noserial -notimestamp \
				-main "cmd/$name" -output "$DIST/$artifact.cdx.json" .
		fi
	done
done

# C collation: the order of SHA256SUMS must not depend on the locale. File names are
# safe to split on white space: they are made of command names and VERSION.
files=$(cd "$DIST" && ls | LC_ALL=C sort)
if command -v sha256sum >/dev/null; then
	sums=$(cd "$DIST" && sha256sum -- $files)
else
	sums=$(cd "$DIST" && shasum -a 256 -- $files) # macOS
fi
printf '%s\n' "$sums" >"$DIST/SHA256SUMS"

printf 'release: %d files in %s/\n' "$(($(ls "$DIST" | wc -l) - 1))" "$DIST"
cat "$DIST/SHA256SUMS"
