package apikey

import (
	"fmt"
	"regexp"
)

// Version is the plugin's semantic version, reported to Vault as RunningVersion and used
// with `vault plugin register -version`.
//
// It is a var, not a const, because the linker's -X flag can only set string variables:
// `make release VERSION=vX.Y.Z` stamps it with
// -ldflags "-X github.com/vault-apikey/vault-plugin-secrets-apikey.Version=vX.Y.Z".
// Nothing in the program assigns it. The value below is what an unstamped build (make
// build, go test) reports; it stays alone on a `Version = "..."` line because tools that
// cannot import the package read it from this file's source.
var (
	Version = "v0.1.0"
)

// versionPattern is what a stamped version must look like: a semantic version with a
// leading v and an optional pre-release part, the same rule scripts/release.sh applies to
// VERSION. Vault compares plugin versions as semantic versions, so anything else would
// register or mount badly.
var versionPattern = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// checkVersion reports why v cannot be the plugin's version.
func checkVersion(v string) error {
	if !versionPattern.MatchString(v) {
		return fmt.Errorf("apikey: version %q (set with -ldflags -X ...Version) is not a semantic version with a leading v such as v1.2.3 or v1.2.3-rc.1: rebuild with a valid version", v)
	}
	return nil
}

// init refuses a binary stamped with a bad version: the plugin process exits before it
// serves Vault, with the reason on stderr, instead of running under a version that Vault
// cannot compare or that names no release. Only a hand-made -X can get here:
// scripts/release.sh checks VERSION first.
func init() {
	if err := checkVersion(Version); err != nil {
		panic(err)
	}
}
