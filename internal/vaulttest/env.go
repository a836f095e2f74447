//go:build unix

package vaulttest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// droppedEnvPrefixes are the variables a child never inherits: VAULT_* would point the
// server, the CLI or the gateway at another Vault (or change its TLS, token, namespace),
// APIKEY_GATEWAY_* would change the gateway's flags.
var droppedEnvPrefixes = []string{"VAULT_", "APIKEY_GATEWAY_"}

// Environ is environ (os.Environ()) without VAULT_* and APIKEY_GATEWAY_* variables,
// followed by extra ("NAME=value"); a variable in extra replaces one of the same name in
// environ (HOME=<dir> keeps the CLI away from the user's token helper).
func Environ(environ []string, extra ...string) []string {
	override := map[string]bool{}
	for _, kv := range extra {
		name, _, _ := strings.Cut(kv, "=")
		override[name] = true
	}
	env := make([]string, 0, len(environ)+len(extra))
next:
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if override[name] {
			continue
		}
		for _, p := range droppedEnvPrefixes {
			if strings.HasPrefix(name, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Executable returns the absolute path of the executable file at path. A relative path
// that does not exist is also looked for under each of dirs, in order: tests run in
// their package's directory, while a path given to `make` is relative to the
// repository root.
func Executable(path string, dirs ...string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("no path given")
	}
	p := path
	if !filepath.IsAbs(p) {
		if _, err := os.Stat(p); err != nil {
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, p)); err == nil {
					p = filepath.Join(d, p)
					break
				}
			}
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", path)
	}
	return abs, nil
}

// ExecutableFromEnv is Executable for the path in the environment variable name, which
// must be set.
func ExecutableFromEnv(name string, dirs ...string) (string, error) {
	p := os.Getenv(name)
	if p == "" {
		return "", fmt.Errorf("%s is not set", name)
	}
	abs, err := Executable(p, dirs...)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", name, p, err)
	}
	return abs, nil
}

// FileSHA256 is the hex SHA-256 of the file at path, as `vault plugin register -sha256`
// wants it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CopyFile copies src to dst (created or truncated) with mode.
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// RandomHex is n random bytes in hex (tokens and names that must not collide).
func RandomHex(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error (it crashes the program instead).
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
