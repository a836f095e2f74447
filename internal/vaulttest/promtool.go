//go:build unix

package vaulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// PromtoolEnv is the variable that names the promtool binary to use instead of the one
// on PATH.
const PromtoolEnv = "PROMTOOL"

// promtoolMissing says what to do when promtool cannot be found. Tests that need it fail
// with this rather than skip: a skipped check is one nobody notices is gone.
const promtoolMissing = "promtool (Prometheus) is needed by this test and was not found: " +
	"install it (Debian/Ubuntu: apt-get install --no-install-recommends prometheus; .ci/run does) " +
	"or set " + PromtoolEnv + "=/path/to/promtool"

// Promtool returns the absolute path of Prometheus's promtool: $PROMTOOL when it is set
// (a relative path is also looked for under dirs, as Executable does), otherwise promtool
// on PATH. The error when neither is there says how to install it; tests fail with it.
func Promtool(dirs ...string) (string, error) {
	if os.Getenv(PromtoolEnv) != "" {
		p, err := ExecutableFromEnv(PromtoolEnv, dirs...)
		if err != nil {
			return "", fmt.Errorf("%w (%s)", err, promtoolMissing)
		}
		return p, nil
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		return "", errors.New(promtoolMissing)
	}
	return Executable(p)
}

// PromtoolError is a failed promtool invocation.
type PromtoolError struct {
	Args     []string
	ExitCode int // -1 if it did not exit by itself (ctx done)
	Output   string
}

func (e *PromtoolError) Error() string {
	return fmt.Sprintf("promtool %s: exit %d\n%s", strings.Join(e.Args, " "), e.ExitCode, e.Output)
}

// RunPromtool runs the promtool binary with args in dir ("" = the current directory),
// with stdin as its standard input (nil = none), until it exits or ctx is done. It
// returns promtool's output (stdout and stderr together); a non-zero exit is a
// *PromtoolError carrying that output.
func RunPromtool(ctx context.Context, promtool, dir string, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, promtool, args...)
	cmd.Dir = dir
	cmd.Env = Environ(os.Environ())
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			out.WriteString("\n(" + ctx.Err().Error() + ")")
		} else if code == -1 {
			out.WriteString("\n(" + err.Error() + ")")
		}
		return out.String(), &PromtoolError{Args: args, ExitCode: code, Output: out.String()}
	}
	return out.String(), nil
}

// CheckMetrics runs `promtool check metrics` on exposition (the Prometheus text format):
// nil only if it parses and promtool's linter has nothing to say (every family has help
// text, counters end in _total, no reserved suffixes, ...).
func CheckMetrics(ctx context.Context, promtool string, exposition []byte) error {
	out, err := RunPromtool(ctx, promtool, "", exposition, "check", "metrics")
	if err != nil {
		return err
	}
	// promtool versions differ in whether lint problems change the exit status; any
	// output is a problem.
	if s := strings.TrimSpace(out); s != "" {
		return &PromtoolError{Args: []string{"check", "metrics"}, ExitCode: 0, Output: s}
	}
	return nil
}
